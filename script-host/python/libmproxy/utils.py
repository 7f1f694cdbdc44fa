"""`libmproxy.utils`: the helpers scripts of the era used."""

import time


def isXML(data):
    """True when `data` (bytes or str) starts, after whitespace, with `<`."""
    if isinstance(data, (bytes, bytearray)):
        data = bytes(data).decode("latin-1")
    return data.lstrip().startswith("<")


def timestamp():
    return time.time()


def pretty_size(size):
    for unit, factor in (("GB", 1024 ** 3), ("MB", 1024 ** 2), ("kB", 1024)):
        if size >= factor:
            return f"{size / factor:.1f}{unit}"
    return f"{size}B"
