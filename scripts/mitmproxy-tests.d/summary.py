"""Compares two flowtap_report.py results: mitmproxy's tests on mitmproxy, and on ours.

    summary.py REFERENCE.json OURS.json[,OURS.json...] PACKAGE_DIR FILE...

Prints, per test file, how many tests pass on mitmproxy itself and how many of those pass
against the package here, then the totals. Exits 1 if a `mitmproxy` module was imported from
anywhere but PACKAGE_DIR during the run against ours (the measure would be void).
"""

import json
import os
import sys


def file_of(nodeid):
    return nodeid.split("::", 1)[0]


def main():
    ref_path, ours_path, package, *files = sys.argv[1:]
    ref = json.load(open(ref_path))
    ours = {"tests": {}, "collection_errors": {}, "mitmproxy": []}
    for part in ours_path.split(","):
        part = json.load(open(part))
        for key in ours:
            if isinstance(ours[key], dict):
                ours[key].update(part[key])
            else:
                ours[key] += part[key]
    package = os.path.realpath(package)
    strays = [m for m in ours["mitmproxy"]
              if not os.path.realpath(m).startswith(package + os.sep)]
    if strays:
        print("mitmproxy-tests: modules imported from outside the package under test:",
              *strays, sep="\n  ", file=sys.stderr)
        return 1
    rows = []
    for path in files:
        in_file = lambda nodeid: file_of(nodeid) == path or file_of(nodeid).startswith(path.rstrip("/") + "/")
        expected = [t for t, o in ref["tests"].items() if in_file(t) and o == "passed"]
        passed = [t for t in expected if ours["tests"].get(t) == "passed"]
        errors = [e for f, e in ours["collection_errors"].items()
                  if in_file(f) or path.startswith(f.rstrip("/") + "/")]
        note = errors[0][0][:70] if errors and errors[0] else ""
        rows.append((path, len(expected), len(passed), note))
    width = max(len(r[0]) for r in rows)
    print(f"{'file':<{width}}  mitmproxy  flowtap  failed  note")
    for path, expected, passed, note in rows:
        print(f"{path:<{width}}  {expected:>9}  {passed:>7}  {expected - passed:>6}  {note}")
    total = sum(r[1] for r in rows)
    good = sum(r[2] for r in rows)
    share = 100.0 * good / total if total else 0.0
    print(f"{'TOTAL':<{width}}  {total:>9}  {good:>7}  {total - good:>6}  {share:.1f}% pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
