"""`mitmproxy.utils.spec`: `/filter/subject/replacement` specs (modify_body, map_remote...)."""

from mitmproxy import flowfilter


def parse_spec(option):
    """`(filter, subject, replacement)` of `/flt/subject/repl` or `/subject/repl` (any first
    character is the separator); ValueError for another number of parts or a bad filter."""
    sep, rest = option[:1], option[1:]
    parts = rest.split(sep)
    if len(parts) == 2:
        subject, replacement = parts
        return flowfilter.match_all, subject, replacement
    if len(parts) == 3:
        pattern, subject, replacement = parts
        return flowfilter.parse(pattern), subject, replacement
    raise ValueError("Invalid number of parameters (2 or 3 are expected)")
