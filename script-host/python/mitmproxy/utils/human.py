"""`mitmproxy.utils.human`: sizes, durations, timestamps and addresses for people."""

import datetime
import functools
import ipaddress
import time

SIZE_UNITS = {"b": 1024 ** 0, "k": 1024 ** 1, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}


def pretty_size(size):
    """`1.5k`, `20m`, ...: at most five characters."""
    if size < 1024:
        return f"{size}b"
    value = float(size)
    for suffix in "kmgt":
        value /= 1024
        if value < 99.95:
            return f"{value:.1f}{suffix}"
        if value < 1024 or suffix == "t":
            return f"{value:.0f}{suffix}"
    raise AssertionError("unreachable")


@functools.lru_cache
def parse_size(s):
    """Bytes in `s` (`100`, `2k`, `1m`...); None for None; ValueError otherwise."""
    if s is None:
        return None
    try:
        return int(s)
    except ValueError:
        pass
    unit = SIZE_UNITS.get(s[-1:]) if s else None
    if unit is not None:
        try:
            return int(s[:-1]) * unit
        except ValueError:
            pass
    raise ValueError("Invalid size specification.")


def pretty_duration(secs):
    """`123s`, `12.3s`, `1.23s` or `123ms`; "" for None."""
    if secs is None:
        return ""
    for limit, fmt in ((100, "{:.0f}s"), (10, "{:2.1f}s"), (1, "{:1.2f}s")):
        if secs >= limit:
            return fmt.format(secs)
    return f"{secs * 1000:.0f}ms"


def format_timestamp(s):
    return datetime.datetime.fromtimestamp(time.mktime(time.localtime(s))).strftime(
        "%Y-%m-%d %H:%M:%S")


def format_timestamp_with_milli(s):
    return datetime.datetime.fromtimestamp(s).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@functools.lru_cache
def format_address(address):
    """`host:port`, `[v6]:port` or `*:port`; `<no address>` for None."""
    if address is None:
        return "<no address>"
    try:
        host = ipaddress.ip_address(address[0])
    except ValueError:
        return f"{address[0]}:{address[1]}"
    if host.is_unspecified:
        return f"*:{address[1]}"
    if isinstance(host, ipaddress.IPv4Address):
        return f"{host}:{address[1]}"
    if host.ipv4_mapped:
        return f"{host.ipv4_mapped}:{address[1]}"
    return f"[{host}]:{address[1]}"
