"""`mitmproxy.hooks`: the events addons handle, as dataclasses named as in mitmproxy.

Each hook is a dataclass whose fields are the hook function's arguments
(`HttpRequestHook(flow)` -> `request(flow)`); `all_hooks` maps every hook name to its class.
mitmproxy defines them across its modules (`mitmproxy.proxy.layers.http.HttpRequestHook`, ...);
they are all made here, so that the names are known before anything else is imported, and those
modules re-export them.
"""

import dataclasses
import re
import typing
import warnings

LIFECYCLE = ("load", "configure", "running", "done", "update", "add_log")
CONNECTION = ("client_connected", "client_disconnected", "server_connect", "server_connected",
              "server_disconnected", "server_connect_error")
HTTP = ("requestheaders", "request", "responseheaders", "response", "error", "http_connect",
        "http_connect_upstream", "http_connected", "http_connect_error")
WEBSOCKET = ("websocket_start", "websocket_message", "websocket_end")
TCP = ("tcp_start", "tcp_message", "tcp_end", "tcp_error")
UDP = ("udp_start", "udp_message", "udp_end", "udp_error")
DNS = ("dns_request", "dns_response", "dns_error")
TLS = ("tls_clienthello", "tls_start_client", "tls_start_server", "tls_established_client",
       "tls_established_server", "tls_failed_client", "tls_failed_server", "next_layer",
       "socks5_auth", "quic_start_client", "quic_start_server")

all_hooks = {}
"""Hook name -> hook class."""


class Hook:
    """Base of the hook dataclasses. `name` is the hook function's name, derived from the class
    name (`HttpRequestHook` -> `http_request`) unless the class sets it."""

    name: typing.ClassVar[str] = ""

    def args(self):
        """The arguments the hook function gets: the fields, in order."""
        return [getattr(self, f.name) for f in dataclasses.fields(self)]

    def __new__(cls, *args, **kwargs):
        if cls is Hook:
            raise TypeError("Hook may not be instantiated directly.")
        if not dataclasses.is_dataclass(cls):
            raise TypeError("Subclass is not a dataclass.")
        return super().__new__(cls)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name") is None or "name" not in cls.__dict__:
            base = cls.__name__.replace("Hook", "")
            cls.name = re.sub("(?!^)([A-Z]+)", r"_\1", base).lower()
        if not cls.name:
            return
        if cls.name in all_hooks:
            warnings.warn(f"Two conflicting event classes for {cls.name}: {cls} and "
                          f"{all_hooks[cls.name]}", RuntimeWarning)
        all_hooks[cls.name] = cls
        # Events are hashable by identity and never equal to one another.
        cls.__hash__ = object.__hash__
        cls.__eq__ = object.__eq__


def _hook(class_name, hook_name, fields, module):
    cls = type(class_name, (Hook,), {
        "__annotations__": {f: typing.Any for f in fields},
        "__module__": module,
        "name": hook_name,
    })
    return dataclasses.dataclass(cls)


@dataclasses.dataclass
class ConfigureHook(Hook):
    """Options changed; `updated` holds their names (all of them at start-up)."""

    updated: set


@dataclasses.dataclass
class DoneHook(Hook):
    """The addon is removed or mitmproxy shuts down: the last event an addon sees."""


@dataclasses.dataclass
class RunningHook(Hook):
    """The proxy is up and every addon is loaded."""


@dataclasses.dataclass
class UpdateHook(Hook):
    """Flows were changed, usually by another addon."""

    flows: typing.Sequence


_LAYERS = "mitmproxy.proxy.layers."
_DEFINITIONS = [
    ("LoadHook", "load", ["loader"], "mitmproxy.addonmanager"),
    ("AddLogHook", "add_log", ["entry"], "mitmproxy.log"),
    ("NextLayerHook", "next_layer", ["data"], "mitmproxy.proxy.layer"),
    ("ClientConnectedHook", "client_connected", ["client"], "mitmproxy.proxy.server_hooks"),
    ("ClientDisconnectedHook", "client_disconnected", ["client"],
     "mitmproxy.proxy.server_hooks"),
    ("Socks5AuthHook", "socks5_auth", ["data"], _LAYERS + "modes"),
    ("QuicStartClientHook", "quic_start_client", ["data"], _LAYERS + "quic"),
    ("QuicStartServerHook", "quic_start_server", ["data"], _LAYERS + "quic"),
]
_DEFINITIONS += [(f"Server{c}Hook", f"server_{n}", ["data"], "mitmproxy.proxy.server_hooks")
                 for c, n in (("Connect", "connect"), ("Connected", "connected"),
                              ("Disconnected", "disconnected"),
                              ("ConnectError", "connect_error"))]
_DEFINITIONS += [(f"Tls{c}Hook", f"tls_{n}", ["data"], _LAYERS + "tls")
                 for c, n in (("Clienthello", "clienthello"), ("StartClient", "start_client"),
                              ("StartServer", "start_server"),
                              ("EstablishedClient", "established_client"),
                              ("EstablishedServer", "established_server"),
                              ("FailedClient", "failed_client"),
                              ("FailedServer", "failed_server"))]
_DEFINITIONS += [(f"Http{c}Hook", n, ["flow"], _LAYERS + "http")
                 for c, n in (("RequestHeaders", "requestheaders"), ("Request", "request"),
                              ("ResponseHeaders", "responseheaders"), ("Response", "response"),
                              ("Error", "error"), ("Connect", "http_connect"),
                              ("ConnectUpstream", "http_connect_upstream"),
                              ("Connected", "http_connected"),
                              ("ConnectError", "http_connect_error"))]
_DEFINITIONS += [(f"{p.title()}{c}Hook", f"{p}_{c.lower()}", ["flow"], _LAYERS + p)
                 for p in ("tcp", "udp") for c in ("Start", "Message", "End", "Error")]
_DEFINITIONS += [(f"Websocket{c}Hook", f"websocket_{c.lower()}", ["flow"], _LAYERS + "websocket")
                 for c in ("Start", "Message", "End")]
_DEFINITIONS += [(f"Dns{c}Hook", f"dns_{c.lower()}", ["flow"], _LAYERS + "dns")
                 for c in ("Request", "Response", "Error")]

_BY_MODULE = {}
for _class_name, _hook_name, _fields, _module in _DEFINITIONS:
    _BY_MODULE.setdefault(_module, {})[_class_name] = _hook(_class_name, _hook_name, _fields,
                                                            _module)


def hooks_of(module):
    """The hook classes mitmproxy defines in `module` (for that module to re-export)."""
    return dict(_BY_MODULE.get(module, {}))
