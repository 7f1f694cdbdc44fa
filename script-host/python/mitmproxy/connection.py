"""`mitmproxy.connection`: the client and server sides of a flow."""

import enum
import time
import uuid


Address = tuple[str, int]


class ConnectionState(enum.Flag):
    CLOSED = 0
    CAN_READ = 1
    CAN_WRITE = 2
    OPEN = CAN_READ | CAN_WRITE


def _addr(value):
    return tuple(value) if value is not None else None


_COMMON = (
    "peername", "sockname", "id", "transport_protocol", "error", "tls", "certificate_list",
    "alpn", "alpn_offers", "cipher", "cipher_list", "tls_version", "sni", "timestamp_start",
    "timestamp_end", "timestamp_tls_setup",
)
_ADDRESS_FIELDS = ("peername", "sockname", "address")


class Connection:
    """Fields shared by `Client` and `Server`, serialized in mitmproxy's dataclass order."""

    _fields = _COMMON

    def __init__(self, **kwargs):
        self.peername = None
        self.sockname = None
        self.id = str(uuid.uuid4())
        self.transport_protocol = "tcp"
        self.error = None
        self.tls = False
        self.certificate_list = []
        self.alpn = None
        self.alpn_offers = []
        self.cipher = None
        self.cipher_list = []
        self.tls_version = None
        self.sni = None
        self.timestamp_start = None
        self.timestamp_end = None
        self.timestamp_tls_setup = None
        self.state = ConnectionState.CLOSED
        # `state` last: a server's address may not change once its connection is open.
        for k, v in sorted(kwargs.items(), key=lambda kv: kv[0] == "state"):
            setattr(self, k, _addr(v) if k in _ADDRESS_FIELDS else v)

    @property
    def certificate_list(self):
        """The peer's certificates as `mitmproxy.certs.Cert`s (leaf first)."""
        certificates = self.__dict__.get("certificate_list") or []
        if any(isinstance(c, (bytes, bytearray)) for c in certificates):
            certificates = [_as_cert(c) for c in certificates]
            self.__dict__["certificate_list"] = certificates
        return certificates

    @certificate_list.setter
    def certificate_list(self, value):
        self.__dict__["certificate_list"] = list(value) if value is not None else []

    @property
    def connected(self):
        return self.state is ConnectionState.OPEN

    @property
    def tls_established(self):
        return self.timestamp_tls_setup is not None

    def get_state(self):
        state = {}
        for name in self._fields:
            if name == "certificate_list":
                state[name] = _certificates_state(self.__dict__.get(name) or [])
                continue
            value = getattr(self, name)
            if name in _ADDRESS_FIELDS and value is not None:
                value = tuple(value)
            elif name == "proxy_mode" and not isinstance(value, str):
                value = value.get_state()
            elif isinstance(value, list):
                value = list(value)
            state[name] = value
        return state

    def set_state(self, state):
        # Fields are plain attributes (no properties among them): write the instance dict.
        attrs = self.__dict__
        for name in self._fields:
            value = state[name]
            if value is None:
                pass
            elif name in _ADDRESS_FIELDS:
                value = tuple(value)
            elif name == "via":
                value = _via(value)
            elif type(value) is list or type(value) is tuple:
                value = list(value)
            attrs[name] = value

    @classmethod
    def from_state(cls, state):
        # Not cls(): set_state sets every field, and __init__'s uuid4 costs a getrandom call.
        conn = cls.__new__(cls)
        conn.state = ConnectionState.CLOSED
        conn.set_state(state)
        return conn

    def __eq__(self, other):
        # One connection, however its fields change: mitmproxy compares ids.
        return isinstance(other, Connection) and self.id == other.id

    def __hash__(self):
        return hash(self.id)

    def copy(self):
        """A copy with a new id."""
        state = self.get_state()
        state["id"] = str(uuid.uuid4())
        return type(self).from_state(state)

    def __repr__(self):
        defaults = type(self)._defaults()
        attrs = {"id": None, "address": None}
        for name in ("id", *self._fields, "state"):
            value = getattr(self, name)
            if name == "id" or value != defaults.get(name):
                if name == "cipher_list":
                    value = f"<{len(value)} ciphers>"
                elif name == "id":
                    value = f"\u2026{value[-6:]}"
                attrs[name] = value
        if attrs["address"] is None and "address" not in self._fields:
            del attrs["address"]
        return f"{type(self).__name__}({attrs!r})"

    @classmethod
    def _defaults(cls):
        if "_default_values" not in cls.__dict__:
            blank = cls.__new__(cls)
            Connection.__init__(blank)
            cls._default_values = {n: blank.__dict__.get(n) for n in cls._fields}
            cls._default_values["state"] = ConnectionState.CLOSED
        return cls._default_values

    def _tls_state(self):
        if self.alpn:
            return f", alpn={self.alpn.decode(errors='replace')}"
        return ", tls" if self.tls_established else ""

    # Deprecated aliases kept for old scripts.
    @property
    def ip_address(self):
        return self.peername

    @property
    def cipher_name(self):
        return self.cipher

    @property
    def alpn_proto_negotiated(self):
        return self.alpn


def _as_cert(data):
    """A `Cert` for certificate bytes from the proxy (kept as bytes if unreadable), which
    remembers those bytes so the state sent back is unchanged."""
    try:
        from .certs import Cert

        cert = Cert.from_state(bytes(data))
    except Exception:  # no `cryptography`, or not a certificate
        return data
    cert._flowtap_raw = bytes(data)
    return cert


def _certificates_state(certificates):
    return [c if isinstance(c, (bytes, bytearray)) else getattr(c, "_flowtap_raw", None)
            or c.get_state() for c in certificates]


def _via(value):
    if value is None:
        return None
    scheme, address = value
    return (scheme, tuple(address))


class Client(Connection):
    """The client side: `peername` is the client's address, `sockname` the listen address."""

    _fields = _COMMON + ("mitmcert", "proxy_mode")

    def __init__(self, **kwargs):
        self.mitmcert = None
        self.proxy_mode = "regular"
        super().__init__(**kwargs)
        if self.timestamp_start is None and "timestamp_start" not in kwargs:
            self.timestamp_start = time.time()

    @property
    def proxy_mode(self):
        """The `ProxyMode` the client came in by (a spec string in the flow's state)."""
        value = self.__dict__.get("proxy_mode", "regular")
        if isinstance(value, str):
            from .proxy.mode_specs import ProxyMode

            try:
                value = ProxyMode.parse(value)
            except ValueError:
                return value
            self.__dict__["proxy_mode"] = value
        return value

    @proxy_mode.setter
    def proxy_mode(self, value):
        self.__dict__["proxy_mode"] = value

    @property
    def address(self):
        return self.peername

    @property
    def clientcert(self):
        return self.certificate_list[0] if self.certificate_list else None

    def __str__(self):
        from mitmproxy.utils.human import format_address

        state = (self.state.name or "closed").lower()
        return f"Client({format_address(self.peername)}, state={state}{self._tls_state()})"


class Server(Connection):
    """The server side: `address` as requested, `peername` as resolved, `via` an upstream proxy."""

    _fields = _COMMON + ("address", "timestamp_tcp_setup", "via")

    def __init__(self, **kwargs):
        self.address = None
        self.timestamp_tcp_setup = None
        self.via = None
        super().__init__(**kwargs)

    @property
    def cert(self):
        return self.certificate_list[0] if self.certificate_list else None

    @property
    def source_address(self):
        return self.sockname

    def __str__(self):
        from mitmproxy.utils.human import format_address

        state = (self.state.name or "closed").lower()
        local_port = f", src_port={self.sockname[1]}" if self.sockname else ""
        return (f"Server({format_address(self.address)}, state={state}{self._tls_state()}"
                f"{local_port})")

    def __setattr__(self, name, value):
        if name in ("address", "via") and self.__dict__.get("state") is ConnectionState.OPEN \
                and self.__dict__.get(name) != value:
            raise RuntimeError(f"Cannot change server.{name} on open connection.")
        super().__setattr__(name, value)
