"""`mitmproxy.net.check`: is a string a valid host name, IP address or port."""

import ipaddress
import re

# Letters, digits, "-" and "_" (which real names carry: SRV records, some CDNs), 1-63 long.
_LABEL = re.compile(rb"[A-Z\d\-_]{1,63}$", re.IGNORECASE)


def is_valid_host(host):
    """True for a DNS name of valid labels (str or IDNA bytes) or an IPv4/IPv6 address."""
    if isinstance(host, str):
        try:
            host = host.encode("idna")
        except UnicodeError:
            return False
    try:
        text = host.decode("idna")
    except ValueError:
        return False
    if len(host) > 255:
        return False
    labels = (host[:-1] if host.endswith(b".") else host).split(b".")
    if all(_LABEL.match(label) for label in labels):
        return True
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def is_valid_port(port):
    return 0 <= port <= 65535
