"""A CPU-bound script for the worker-pool bench: each response hook keeps Python busy for
about 1 ms (holding the GIL), as a script that parses or rewrites bodies would."""

import time


def response(flow):
    end = time.perf_counter() + 0.001
    spins = 0
    while time.perf_counter() < end:
        spins += 1
    flow.response.headers["x-spins"] = str(spins)
