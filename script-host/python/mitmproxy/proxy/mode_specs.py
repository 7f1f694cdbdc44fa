"""`mitmproxy.proxy.mode_specs`: proxy modes as written on the command line.

`ProxyMode.parse("reverse:https://example.com@127.0.0.1:8443")` gives a `ReverseMode` with
`data="https://example.com"` and a custom listen address. A mode is immutable and serializes
as its spec string (that is how `client_conn.proxy_mode` appears in flow files).
"""

import dataclasses
import functools

from mitmproxy.net import server_spec

TCP, UDP, BOTH = "tcp", "udp", "both"

_MODES = {}


@dataclasses.dataclass(frozen=True)
class ProxyMode:
    """One `--mode` spec: `type_name[:data][@[host:]port]`."""

    full_spec: str
    data: str
    custom_listen_host: str | None
    custom_listen_port: int | None

    type_name = "proxy"
    description = ""
    default_port = 8080
    transport_protocol = TCP

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.type_name = cls.__name__.removesuffix("Mode").lower()
        _MODES[cls.type_name] = cls

    def __post_init__(self):
        pass

    def __repr__(self):
        return f"ProxyMode.parse({self.full_spec!r})"

    @classmethod
    def parse(cls, spec):
        """The mode `spec` names; ValueError for an unknown mode, bad port or bad data."""
        return _parse(cls, spec)

    def listen_host(self, default=None):
        """The spec's listen host, else `default`, else "" (all interfaces)."""
        if self.custom_listen_host is not None:
            return self.custom_listen_host
        return default if default is not None else ""

    def listen_port(self, default=None):
        """The spec's listen port, else `default`, else the mode's default (None: no port)."""
        if self.custom_listen_port is not None:
            return self.custom_listen_port
        return default if default is not None else self.default_port

    @classmethod
    def from_state(cls, state):
        return ProxyMode.parse(state)

    def get_state(self):
        return self.full_spec

    def set_state(self, state):
        if state != self.full_spec:
            raise dataclasses.FrozenInstanceError("Proxy modes are immutable.")


@functools.cache
def _parse(cls, spec):
    head, _, listen_at = spec.rpartition("@")
    if not head:
        head, listen_at = listen_at, ""
    mode, _, data = head.partition(":")
    host = port = None
    if listen_at:
        host, _, port_text = listen_at.rpartition(":") if ":" in listen_at else (None, "", listen_at)
        try:
            port = int(port_text)
        except ValueError:
            port = -1
        if not 0 <= port <= 65535:
            raise ValueError(f"invalid port: {port_text}")
    mode_cls = _MODES.get(mode.lower())
    if mode_cls is None:
        raise ValueError("unknown mode")
    if not issubclass(mode_cls, cls):
        raise ValueError(f"{mode!r} is not a spec for a {cls.type_name} mode")
    return mode_cls(full_spec=spec, data=data, custom_listen_host=host, custom_listen_port=port)


def _no_data(mode):
    if mode.data:
        raise ValueError("mode takes no arguments")


class RegularMode(ProxyMode):
    """A regular HTTP(S) proxy."""

    description = "HTTP(S) proxy"

    def __post_init__(self):
        _no_data(self)


class TransparentMode(ProxyMode):
    """A transparent proxy (traffic redirected to it by the OS)."""

    description = "Transparent Proxy"

    def __post_init__(self):
        _no_data(self)


class UpstreamMode(ProxyMode):
    """A regular proxy that forwards everything to another HTTP(S) proxy."""

    description = "HTTP(S) proxy (upstream mode)"

    def __post_init__(self):
        scheme, address = server_spec.parse(self.data, default_scheme="http")
        if scheme not in ("http", "https"):
            raise ValueError("invalid upstream proxy scheme")
        object.__setattr__(self, "scheme", scheme)
        object.__setattr__(self, "address", address)


class ReverseMode(ProxyMode):
    """A reverse proxy in front of one server."""

    description = "reverse proxy"

    def __post_init__(self):
        scheme, address = server_spec.parse(self.data, default_scheme="https")
        object.__setattr__(self, "scheme", scheme)
        object.__setattr__(self, "address", address)
        if scheme in ("http3", "dtls", "udp", "quic"):
            object.__setattr__(self, "transport_protocol", UDP)
        elif scheme in ("dns", "https"):
            object.__setattr__(self, "transport_protocol", BOTH)
        object.__setattr__(self, "description", f"reverse proxy to {self.data}")

    @property
    def default_port(self):
        return 53 if self.scheme == "dns" else 8080


class Socks5Mode(ProxyMode):
    """A SOCKSv5 proxy."""

    description = "SOCKS v5 proxy"
    default_port = 1080

    def __post_init__(self):
        _no_data(self)


class DnsMode(ProxyMode):
    """A DNS server that resolves via the system."""

    description = "DNS server"
    default_port = 53
    transport_protocol = BOTH

    def __post_init__(self):
        _no_data(self)


class WireGuardMode(ProxyMode):
    """A WireGuard server; `data` is an optional configuration file."""

    description = "WireGuard server"
    default_port = 51820
    transport_protocol = UDP


class LocalMode(ProxyMode):
    """Local applications' traffic, redirected by the OS; `data` says which."""

    description = "Local redirector"
    default_port = None
    transport_protocol = BOTH

    def __post_init__(self):
        # A spec is a comma-separated list of (optionally !-negated) names or pids.
        if self.data and any(not part.strip().lstrip("!") for part in self.data.split(",")):
            raise ValueError(f"invalid intercept spec: {self.data}")


class TunMode(ProxyMode):
    """A TUN interface; `data` is its name."""

    description = "TUN interface"
    default_port = None
    transport_protocol = BOTH


class OsProxyMode(ProxyMode):
    """The operating system's proxy settings point here."""

    description = "OS proxy"
    default_port = None
    transport_protocol = BOTH
