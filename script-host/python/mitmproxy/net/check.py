"""`mitmproxy.net.check`: is a string a valid host name or IP address."""

import ipaddress
import re

# RFC 1035 labels, plus "_" which real DNS names carry (SRV, some CDNs).
_LABEL = re.compile(rb"(?!-)[A-Z\d\-_]{1,63}(?<!-)$", re.IGNORECASE)


def is_valid_host(host):
    """True for an IP address or a DNS name of valid labels (str or bytes, IDNA allowed)."""
    if isinstance(host, str):
        try:
            host = host.encode("idna")
        except UnicodeError:
            return False
    try:
        ipaddress.ip_address(host.decode())
        return True
    except ValueError:
        pass
    if not host or len(host) > 255:
        return False
    if host.endswith(b"."):
        host = host[:-1]
    labels = host.split(b".")
    # A name may not end in an all-numeric label unless the whole is an IP address.
    if labels and labels[-1].isdigit():
        return False
    return all(_LABEL.match(label) for label in labels)


def is_valid_port(port):
    return 0 <= port <= 65535
