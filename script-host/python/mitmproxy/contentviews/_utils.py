"""Helpers of the views: metadata for a message, its decoded data, YAML for key/value views."""

import re
from pathlib import Path

from mitmproxy import ctx, http
from mitmproxy.dns import DNSMessage
from mitmproxy.tcp import TCPMessage
from mitmproxy.udp import UDPMessage
from mitmproxy.utils import strutils
from mitmproxy.websocket import WebSocketMessage

from ._api import Metadata


def make_metadata(message, flow):
    """The `Metadata` for `message` (an HTTP message, TCP/UDP/WebSocket message or DNS
    message) of `flow`."""
    definitions = getattr(ctx.options, "protobuf_definitions", None) \
        if "protobuf_definitions" in ctx.options else None
    metadata = Metadata(flow=flow,
                        protobuf_definitions=Path(definitions).expanduser() if definitions else None)
    if isinstance(message, http.Message):
        metadata.http_message = message
        content_type = message.headers.get("content-type")
        parsed = http.parse_content_type(content_type) if content_type else None
        if parsed:
            metadata.content_type = f"{parsed[0]}/{parsed[1]}"
    elif isinstance(message, UDPMessage):
        metadata.udp_message = message
    elif isinstance(message, TCPMessage):
        metadata.tcp_message = message
    elif isinstance(message, WebSocketMessage):
        metadata.websocket_message = message
    elif isinstance(message, DNSMessage):
        metadata.dns_message = message
    return metadata


def get_data(message):
    """`(data, description)`: the decoded content (raw if it cannot be decoded)."""
    try:
        content = message.content
    except ValueError:
        return message.raw_content, "[cannot decode]"
    if isinstance(message, http.Message) and content != message.raw_content:
        return content, f"[decoded {message.headers.get('content-encoding')}]"
    return content, ""


# Strings YAML would read as something else (or not at all) without quotes.
_KEYWORDS = re.compile(r"^(?:true|false|yes|no|on|off|null|~|y|n)$", re.IGNORECASE)
_NUMBER = re.compile(r"^[-+]?(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$"
                     r"|^[-+]?\.(?:inf|nan)$|^0[xo][0-9a-fA-F]+$", re.IGNORECASE)


def _scalar(value):
    value = str(value)
    plain = (value and value == value.strip() and value[0] not in "-?:,[]{}#&*!|>'\"%@`"
             and ": " not in value and " #" not in value and "\n" not in value
             and not value.endswith(":") and value.isprintable()
             and not _KEYWORDS.match(value) and not _NUMBER.match(value))
    return value if plain else "'" + value.replace("'", "''") + "'"


def yaml_dumps(d):
    """YAML for a mapping of strings to strings or lists of strings ("" for an empty one)."""
    if not d:
        return ""
    lines = []
    for key, value in d.items():
        if isinstance(value, (list, tuple)):
            lines.append(f"{_scalar(key)}:")
            lines.extend(f"- {_scalar(v)}" for v in value)
        else:
            lines.append(f"{_scalar(key)}: {_scalar(value)}")
    return "\n".join(lines) + "\n"


def _unscalar(text):
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    return text


def yaml_loads(yaml):
    """The inverse of `yaml_dumps` (None for an empty document)."""
    if not yaml.strip():
        return None
    result, key = {}, None
    for line in yaml.splitlines():
        if not line.strip():
            continue
        if line.startswith("- ") and key is not None:
            result[key].append(_unscalar(line[2:]))
            continue
        m = re.match(r"^('(?:[^']|'')*'|[^:]*):(?: (.*))?$", line)
        if not m:
            raise ValueError(f"not the YAML this view writes: {line!r}")
        key = _unscalar(m.group(1))
        result[key] = _unscalar(m.group(2)) if m.group(2) is not None else []
    return result


def merge_repeated_keys(items):
    """`{key: value}`, a repeated key's values collected in a list."""
    merged = {}
    for key, value in items:
        existing = merged.get(key)
        if existing is None:
            merged[key] = value
        elif isinstance(existing, list):
            existing.append(value)
        else:
            merged[key] = [existing, value]
    return merged


def byte_pairs_to_str_pairs(items):
    for key, value in items:
        yield strutils.bytes_to_escaped_str(key), strutils.bytes_to_escaped_str(value)
