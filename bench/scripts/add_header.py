"""Benchmark script: adds one response header."""


def response(flow):
    flow.response.headers["x-flowtap-bench"] = "1"
