"""`mitmproxy.net.server_spec`: `[scheme://]host[:port]` as used by upstream and reverse modes."""

import functools
import re
from typing import NamedTuple

from . import check

_SPEC = re.compile(r"^(?:(?P<scheme>\w+)://)?(?P<host>[^:/]+|\[.+\])(?::(?P<port>\d+))?/?$")

_DEFAULT_PORTS = {"http": 80, "https": 443, "http3": 443, "quic": 443, "dns": 53, "tls": None,
                  "dtls": None, "tcp": None, "udp": None}


class ServerSpec(NamedTuple):
    scheme: str
    address: tuple


@functools.cache
def parse(server_spec, default_scheme):
    """`ServerSpec(scheme, (host, port))` of a spec; ValueError if it is not one."""
    m = _SPEC.match(server_spec)
    if not m:
        raise ValueError(f"Invalid server specification: {server_spec}")
    scheme = m.group("scheme") or default_scheme
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"Invalid server scheme: {scheme}")
    host = m.group("host")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not check.is_valid_host(host):
        raise ValueError(f"Invalid hostname: {host}")
    if m.group("port"):
        port = int(m.group("port"))
    else:
        port = _DEFAULT_PORTS[scheme]
        if port is None:
            raise ValueError("Port specification missing.")
    if not check.is_valid_port(port):
        raise ValueError(f"Invalid port: {port}")
    return ServerSpec(scheme, (host, port))


def parse_with_mode(mode):
    """Old form `mode:spec` -> (mode, ServerSpec)."""
    mode, spec = mode.split(":", maxsplit=1)
    return mode, parse(spec, "http")
