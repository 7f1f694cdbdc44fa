"""mitmproxy.io: reading and writing flow files from scripts.

The bytes are mitmproxy's own (tnetstring `get_state()` dicts, format version 21), made by the
same code that reads `-r` and writes `-w`; files from older versions are migrated on read.
"""

import os

from mitmproxy import exceptions, flowfilter
from mitmproxy.flow import Flow

import _flowtap_io

__all__ = ["FlowReader", "FlowWriter", "FilteredFlowWriter", "read_flows_from_paths"]


class FlowWriter:
    """Appends flows to a binary file object: `FlowWriter(f).add(flow)`."""

    def __init__(self, fo):
        self.fo = fo

    def add(self, flow):
        self.fo.write(_flowtap_io.dumps(flow.get_state()))


class FilteredFlowWriter(FlowWriter):
    """A FlowWriter that writes only the flows a filter (a parsed `flowfilter`) matches."""

    def __init__(self, fo, flt):
        super().__init__(fo)
        self.flt = flt

    def add(self, flow):
        if self.flt and not flowfilter.match(self.flt, flow):
            return
        super().add(flow)


class FlowReader:
    """Reads the flows of a binary file object: `for flow in FlowReader(f).stream(): ...`."""

    def __init__(self, fo):
        self.fo = fo

    def stream(self):
        try:
            states = _flowtap_io.loads(self.fo.read())
        except ValueError as e:
            raise exceptions.FlowReadException(str(e)) from None
        for state in states:
            try:
                yield Flow.from_state(state)
            except (KeyError, TypeError, ValueError) as e:
                raise exceptions.FlowReadException(f"invalid flow state: {e}") from None


def read_flows_from_paths(paths):
    """All flows of the files at `paths`, in order; FlowReadException if one cannot be read."""
    flows = []
    for path in paths:
        path = os.path.expanduser(path)
        try:
            with open(path, "rb") as f:
                flows.extend(FlowReader(f).stream())
        except OSError as e:
            raise exceptions.FlowReadException(e.strerror) from None
    return flows
