"""`mitmproxy.flow`: the base of every flow type, and `Error`."""

import asyncio
import copy as _copy
import threading
import time
import uuid

from . import connection as _connection_module
from . import exceptions
from .version import FLOW_FORMAT_VERSION


class Error:
    """An error that ended a flow. A killed flow has `msg == Error.KILLED_MESSAGE`."""

    KILLED_MESSAGE = "Connection killed."

    def __init__(self, msg, timestamp=None):
        self.msg = msg
        self.timestamp = timestamp if timestamp is not None else time.time()

    def __str__(self):
        return self.msg

    def __repr__(self):
        return self.msg

    def __eq__(self, other):
        return isinstance(other, Error) and self.get_state() == other.get_state()

    def get_state(self):
        return {"msg": self.msg, "timestamp": self.timestamp}

    def set_state(self, state):
        self.msg = state["msg"]
        self.timestamp = state["timestamp"]

    @classmethod
    def from_state(cls, state):
        return cls(state["msg"], state["timestamp"])

    def copy(self):
        return Error(self.msg, self.timestamp)


class _Raw(threading.local):
    """Set while the host takes a flow's state for its reply (see `raw_state`)."""

    on = False


_RAW = _Raw()


def _plain(state):
    """A part's state as a dict. The script host sends unread parts as lazy mappings (its
    `PartState`) that build the dict on demand."""
    return state if type(state) is dict else state.state()


def raw_state(flow):
    """`flow.get_state()` with each part no script read left as the state it was set from
    (for the script host: it compares that state by identity and sends it back as it came)."""
    _RAW.on = True
    try:
        return flow.get_state()
    finally:
        _RAW.on = False


class _Part:
    """A part of a flow (a connection, a request or response) that `set_state` keeps as its
    state until a script first reads it. Until then `get_state()` gives that state back as a
    dict (`raw_state` as it came), so a part no script touched costs neither building nor
    comparing."""

    __slots__ = ("make", "name", "state_name")

    def __init__(self, make):
        self.make = make
        self.name = self.state_name = None

    def __set_name__(self, owner, name):
        self.name = "_part_" + name
        self.state_name = "_part_state_" + name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        attrs = obj.__dict__
        state = attrs.get(self.state_name)
        if state is not None:
            attrs[self.name] = value = self.make(_plain(state))
            attrs[self.state_name] = None
            return value
        return attrs.get(self.name)

    def __set__(self, obj, value):
        attrs = obj.__dict__
        attrs[self.name] = value
        attrs[self.state_name] = None

    def load(self, obj, state):
        """`set_state` of the part: a part already built is updated in place (scripts may hold
        it); else the state is kept for later."""
        attrs = obj.__dict__
        current = attrs.get(self.name)
        if state is not None and current is not None and attrs.get(self.state_name) is None \
                and hasattr(current, "set_state"):
            current.set_state(_plain(state))
            return
        attrs[self.name] = None
        attrs[self.state_name] = state

    def dump(self, obj):
        """`get_state` of the part: the kept state itself while it was not built."""
        attrs = obj.__dict__
        state = attrs.get(self.state_name)
        if state is not None:
            return state if _RAW.on else _plain(state)
        value = attrs.get(self.name)
        return value.get_state() if value is not None else None


_CLIENT = _Part(lambda state: _connection_module.Client.from_state(state))
_SERVER = _Part(lambda state: _connection_module.Server.from_state(state))


class Flow:
    """What every flow has: identity, connections, error, intercept state, marks, metadata.

    `kill()`, `intercept()` and `resume()` inside a hook change the flow and the host turns the
    change into a verdict; outside a hook (a later task, another flow's hook) they reach the proxy
    as control messages.
    """

    type = "flow"
    client_conn = _CLIENT
    server_conn = _SERVER

    def __init__(self, client_conn, server_conn, live=False):
        self.id = str(uuid.uuid4())
        self.client_conn = client_conn
        self.server_conn = server_conn
        self.live = live
        self.error = None
        self.intercepted = False
        self.marked = ""
        self.is_replay = None
        self.metadata = {}
        self.comment = ""
        self.timestamp_created = time.time()
        self._backup = None
        # Set by the script host: told about kill/resume, it sends them to the proxy unless the
        # flow is inside its own hook (then the hook's reply carries them).
        self._flowtap_control = None

    # -- state ---------------------------------------------------------------------------------

    def _common_state(self):
        return {
            "version": FLOW_FORMAT_VERSION,
            "type": self.type,
            "id": self.id,
            "error": self.error.get_state() if self.error else None,
            "client_conn": _CLIENT.dump(self),
            "server_conn": _SERVER.dump(self),
            "intercepted": self.intercepted,
            "is_replay": self.is_replay,
            "marked": self.marked,
            "metadata": _copy.deepcopy(self.metadata) if self.metadata else {},
            "comment": self.comment,
            "timestamp_created": self.timestamp_created,
            "backup": self._backup,
        }

    def get_state(self):
        return self._common_state()

    def set_state(self, state):
        connection = _connection_module
        state = dict(state)
        version = state.pop("version", FLOW_FORMAT_VERSION)
        if version != FLOW_FORMAT_VERSION:
            raise ValueError(f"flow state version {version}, expected {FLOW_FORMAT_VERSION}")
        if state.pop("type", self.type) != self.type:
            raise ValueError(f"not a {self.type} flow state")
        self.id = state.pop("id")
        err = state.pop("error")
        self.error = Error.from_state(err) if err else None
        _CLIENT.load(self, state.pop("client_conn"))
        _SERVER.load(self, state.pop("server_conn"))
        self.intercepted = state.pop("intercepted")
        self.is_replay = state.pop("is_replay")
        self.marked = state.pop("marked")
        if isinstance(self.marked, bool):
            self.marked = ":default:" if self.marked else ""
        metadata = state.pop("metadata")
        self.metadata = _copy.deepcopy(metadata) if metadata else {}
        self.comment = state.pop("comment")
        self.timestamp_created = state.pop("timestamp_created")
        self._backup = state.pop("backup", None)
        self.live = state.pop("live", self.live)
        self._set_type_state(state)
        if state:
            raise ValueError(f"unexpected keys in flow state: {sorted(state)}")

    def _set_type_state(self, state):
        pass

    @classmethod
    def from_state(cls, state):
        kind = state["type"]
        target = _flow_types().get(kind)
        if target is None:
            raise ValueError(f"Unknown flow type: {kind}")
        if cls is not Flow and not issubclass(target, cls):
            raise ValueError(f"not a {cls.type} flow state")
        flow = target.__new__(target)
        flow._init_empty()
        flow.set_state(state)
        return flow

    def _init_blank(self):
        """The attributes of `__init__` without its uuid and clock calls, for `from_state`
        (which sets every one of them)."""
        self.id = ""
        self.client_conn = None
        self.server_conn = None
        self.live = False
        self.error = None
        self.intercepted = False
        self.marked = ""
        self.is_replay = None
        self.metadata = {}
        self.comment = ""
        self.timestamp_created = 0.0
        self._backup = None
        self._flowtap_control = None

    def _init_empty(self):
        from . import connection

        Flow.__init__(self, connection.Client(), connection.Server())

    def copy(self):
        """A deep copy with a new id, not live: what `replay.client` is given."""
        f = Flow.from_state(self.get_state())
        f.id = str(uuid.uuid4())
        f.live = False
        return f

    def backup(self, force=False):
        if not self._backup or force:
            state = self.get_state()
            state["backup"] = None
            self._backup = state

    def revert(self):
        if self._backup:
            self.set_state(self._backup)
            self._backup = None

    def modified(self):
        if self._backup is None:
            return False
        state = self.get_state()
        state["backup"] = None
        return state != self._backup

    # -- control -------------------------------------------------------------------------------

    @property
    def killable(self):
        return self.live and not (self.error and self.error.msg == Error.KILLED_MESSAGE)

    def kill(self):
        """Kills the flow: error "Connection killed.", not intercepted, not live."""
        if not self.killable:
            raise exceptions.ControlException("Flow is not killable.")
        self.error = Error(Error.KILLED_MESSAGE)
        self.intercepted = False
        self.live = False
        if self._flowtap_control is not None:
            self._flowtap_control.kill(self)

    def intercept(self):
        """Pauses the flow after the current hook until `resume()` is called."""
        if self.intercepted:
            return
        self.intercepted = True

    def resume(self):
        """Releases an intercepted flow."""
        if not self.intercepted:
            return
        self.intercepted = False
        if self._flowtap_control is not None:
            self._flowtap_control.resume(self)

    async def wait_for_resume(self):
        while self.intercepted:
            await asyncio.sleep(0.01)

    @property
    def timestamp_start(self):
        return self.client_conn.timestamp_start

    def __repr__(self):
        return f"<{type(self).__name__} {self.id}>"


def _set_or_make(current, cls, state):
    if state is None:
        return None
    if current is not None and hasattr(current, "set_state"):
        current.set_state(state)
        return current
    return cls.from_state(state)


_FLOW_TYPES = None


def _flow_types():
    global _FLOW_TYPES
    if _FLOW_TYPES is None:
        from . import dns, http, tcp, udp

        _FLOW_TYPES = {"http": http.HTTPFlow, "tcp": tcp.TCPFlow, "udp": udp.UDPFlow,
                       "dns": dns.DNSFlow}
    return _FLOW_TYPES

