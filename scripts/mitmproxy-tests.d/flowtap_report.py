"""A pytest plugin for scripts/mitmproxy-tests: records each test's outcome as JSON.

Loaded with `-p flowtap_report`; writes {"tests": {nodeid: outcome}, "collection_errors":
{file: message}, "mitmproxy": [module files]} to the path in $FLOWTAP_REPORT when the session
ends. An outcome is "passed", "failed", "error" (setup or teardown failed) or "skipped" (also
xfail). "mitmproxy" lists where every imported `mitmproxy` module came from, so the caller can
check that the package under test, and nothing else, was imported under that name.
"""

import json
import os
import sys

_tests = {}
_collection_errors = {}


def pytest_collectreport(report):
    if report.failed:
        _collection_errors[report.nodeid] = str(report.longrepr).strip().splitlines()[-1:]


def pytest_runtest_logreport(report):
    if report.when == "call":
        if hasattr(report, "wasxfail"):
            _tests[report.nodeid] = "skipped"
        else:
            _tests[report.nodeid] = report.outcome
    elif report.failed:
        _tests[report.nodeid] = "error"
    elif report.skipped and report.when == "setup":
        _tests[report.nodeid] = "skipped"


def pytest_sessionfinish(session):
    modules = sorted(
        {getattr(m, "__file__", None) or "<no file>"
         for name, m in list(sys.modules.items())
         if name == "mitmproxy" or name.startswith("mitmproxy.")}
    )
    with open(os.environ["FLOWTAP_REPORT"], "w") as f:
        json.dump({"tests": _tests, "collection_errors": _collection_errors,
                   "mitmproxy": modules}, f, indent=1)
