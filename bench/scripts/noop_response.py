"""Benchmark script: a response hook that does nothing (measures the hook round trip)."""


def response(flow):
    pass
