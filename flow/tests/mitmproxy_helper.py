"""Runs inside the mitmproxy 12.3.1 venv for flowtap-flow's differential tests.

    python mitmproxy_helper.py canon FILE          -> JSON list, one canonical dict per flow
    python mitmproxy_helper.py rewrite IN OUT      -> mitmproxy reads IN and writes OUT
    python mitmproxy_helper.py filter FILE < exprs -> JSON {expr: [bool per flow] or "error"}
    python mitmproxy_helper.py har FILE            -> the HAR mitmproxy's savehar makes of FILE

Canonical form: bytes -> "b:<hex>", str -> "s:<text>", float -> "f:<repr>", dict keys stay
plain strings. It is the flow's get_state() plus a few derived properties.
"""

import json
import sys

from mitmproxy import flowfilter, http, io, version


def canon(v):
    if v is None or isinstance(v, bool) or isinstance(v, int):
        return v
    if isinstance(v, float):
        return "f:" + repr(v)
    if isinstance(v, bytes):
        return "b:" + v.hex()
    if isinstance(v, str):
        return "s:" + v
    if isinstance(v, (list, tuple)):
        return [canon(x) for x in v]
    if isinstance(v, dict):
        return {(k if isinstance(k, str) else "b:" + k.hex()): canon(x) for k, x in v.items()}
    raise TypeError(f"unexpected {type(v)}")


def read(path):
    with open(path, "rb") as f:
        return list(io.FlowReader(f).stream())


def describe(flow):
    out = {"state": canon(flow.get_state())}
    if isinstance(flow, http.HTTPFlow):
        out["url"] = flow.request.url
        out["pretty_url"] = flow.request.pretty_url
        out["pretty_host"] = flow.request.pretty_host
    return out


def main():
    assert version.VERSION == "12.3.1", version.VERSION
    cmd = sys.argv[1]
    if cmd == "canon":
        print(json.dumps([describe(f) for f in read(sys.argv[2])]))
    elif cmd == "rewrite":
        flows = read(sys.argv[2])
        with open(sys.argv[3], "wb") as f:
            writer = io.FlowWriter(f)
            for flow in flows:
                writer.add(flow)
        print(len(flows))
    elif cmd == "filter":
        flows = read(sys.argv[2])
        result = {}
        for expr in json.load(sys.stdin):
            try:
                flt = flowfilter.parse(expr)
            except ValueError:
                result[expr] = "error"
                continue
            result[expr] = [bool(flt(f)) for f in flows]
        print(json.dumps(result))
    elif cmd == "har":
        from mitmproxy.addons.savehar import SaveHar

        print(json.dumps(SaveHar().make_har(read(sys.argv[2])), indent=4))
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
