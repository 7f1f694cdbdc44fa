"""`mitmproxy.proxy.layers.modes`: the hooks of this layer (flowtap's proxy is in Rust)."""

from dataclasses import dataclass

from mitmproxy.hooks import hooks_of


@dataclass
class Socks5AuthData:
    """The argument of `socks5_auth`: a SOCKS5 client's credentials; set `valid` to accept
    them (`proxyauth` has set it already when its check passed)."""

    client_conn: object
    username: str
    password: str
    valid: bool = False


globals().update(hooks_of(__name__))
