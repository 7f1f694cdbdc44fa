"""`libmproxy.flow`: `FlowWriter` and `FlowReader` over flowtap's flow files.

Files are written in mitmproxy 12's format (what flowtap and mitmproxy 12 read), not the
0.x format; a flow the old API handed to the script is written as the flow underneath.
"""

from flowtap_host.legacy import OldFlow
from flowtap_host.legacy_http import unwrap
from mitmproxy import io

FlowReadError = io.FlowReadException if hasattr(io, "FlowReadException") else Exception


class FlowWriter:
    """`FlowWriter(file).add(flow)`; takes old-API flows too."""

    def __init__(self, fo):
        self._writer = io.FlowWriter(fo)

    def add(self, flow):
        self._writer.add(unwrap(flow))


class FlowReader:
    """`FlowReader(file).stream()` yields flows with the old-API view."""

    def __init__(self, fo):
        self._reader = io.FlowReader(fo)

    def stream(self):
        for flow in self._reader.stream():
            yield OldFlow(flow) if getattr(flow, "type", "") == "http" else flow
