"""mitmproxy.io: reading and writing flow files from scripts.

The bytes are mitmproxy's own (tnetstring `get_state()` dicts, format version 21). Inside the
script host they are made by the same native code that reads `-r` and writes `-w`, and files
from older versions are migrated on read. In plain Python (an addon's own tests) the
`tnetstring` module here reads and writes them; files of older versions need the script host.
"""

import os

from mitmproxy import exceptions, flowfilter
from mitmproxy.flow import Flow
from mitmproxy.io import tnetstring
from mitmproxy.version import FLOW_FORMAT_VERSION

try:
    import _flowtap_io
except ImportError:  # plain Python: no script host around
    _flowtap_io = None


class _PythonIO:
    """`_flowtap_io`'s `dumps`/`loads` for the current format version, in Python."""

    @staticmethod
    def dumps(state):
        return tnetstring.dumps(state)

    @staticmethod
    def loads(data):
        states = []
        while data:
            try:
                state, data = tnetstring.pop(data)
            except ValueError as e:
                raise ValueError(f"Invalid data format: {e}") from None
            if not isinstance(state, dict):
                raise ValueError(f"not a flow: {type(state).__name__}")
            version = state.get("version")
            if version != FLOW_FORMAT_VERSION:
                raise ValueError(
                    f"cannot read files with flow format version {version} outside the "
                    f"script host (this one reads version {FLOW_FORMAT_VERSION})")
            states.append(_tuples(state))
        return states


def _tuples(state):
    """Header fields as tuples, as `get_state()` gives them (tnetstring has only lists)."""
    for part in ("request", "response"):
        message = state.get(part)
        if isinstance(message, dict):
            for key in ("headers", "trailers"):
                if isinstance(message.get(key), list):
                    message[key] = tuple(tuple(field) for field in message[key])
    for conn in ("client_conn", "server_conn"):
        fields = state.get(conn)
        if isinstance(fields, dict):
            for key in ("peername", "sockname", "address"):
                if isinstance(fields.get(key), list):
                    fields[key] = tuple(fields[key])
            if isinstance(fields.get("via"), list):
                scheme, address = fields["via"]
                fields["via"] = (scheme, tuple(address))
    return state


if _flowtap_io is None:
    _flowtap_io = _PythonIO

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
            except (KeyError, TypeError, ValueError, AttributeError) as e:
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
