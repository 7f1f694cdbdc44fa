"""`mitmproxy.net.dns.https_records`: HTTPS/SVCB record data (RFC 9460 section 2.2).

Wire format: priority (2 bytes), the target name (uncompressed), then parameters as
key (2), length (2), value, in increasing key order.
"""

import dataclasses
import enum
import struct

from mitmproxy.utils import strutils


class SVCParamKeys(enum.Enum):
    MANDATORY = 0
    ALPN = 1
    NO_DEFAULT_ALPN = 2
    PORT = 3
    IPV4HINT = 4
    ECH = 5
    IPV6HINT = 6


@dataclasses.dataclass
class HTTPSRecord:
    priority: int
    target_name: str
    params: dict

    def __repr__(self):
        return str(self.to_json())

    def to_json(self):
        """`{"target_name", "priority", <param name or number>: escaped value}`."""
        out = {"target_name": self.target_name, "priority": self.priority}
        for key, value in self.params.items():
            try:
                key = SVCParamKeys(key).name.lower()
            except ValueError:
                pass
            out[key] = strutils.bytes_to_escaped_str(value)
        return out

    @classmethod
    def from_json(cls, data):
        data = dict(data)
        target_name, priority = data.pop("target_name"), data.pop("priority")
        params = {}
        for key, value in data.items():
            if isinstance(key, str):
                key = SVCParamKeys[key.upper()].value
            params[key] = strutils.escaped_str_to_bytes(value)
        return cls(priority, target_name, params)


def _unpack_name(data, offset):
    labels = []
    while True:
        length = data[offset]
        offset += 1
        if length == 0:
            return ".".join(labels), offset
        if length & 0xC0:
            raise ValueError("compressed names are not allowed in SVCB records")
        labels.append(data[offset:offset + length].decode("idna"))
        offset += length


def unpack(data):
    """The record in `data`; struct.error or ValueError if it is not one."""
    (priority,) = struct.unpack_from("!H", data, 0)
    try:
        target_name, offset = _unpack_name(data, 2)
    except IndexError:
        raise struct.error("truncated HTTPS record") from None
    params = {}
    while offset < len(data):
        key, size = struct.unpack_from("!HH", data, offset)
        offset += 4
        if offset + size > len(data):
            raise struct.error("truncated HTTPS record parameter")
        params[key] = data[offset:offset + size]
        offset += size
    return HTTPSRecord(priority, target_name, params)


def pack(record):
    """The wire format of `record`."""
    out = struct.pack("!H", record.priority)
    for label in record.target_name.rstrip(".").split("."):
        if label:
            encoded = label.encode("idna")
            out += bytes([len(encoded)]) + encoded
    out += b"\x00"
    for key in sorted(record.params):
        value = record.params[key]
        out += struct.pack("!HH", key, len(value)) + value
    return out
