"""`mitmproxy.dns`: DNS flows and messages (fields as in mitmproxy's state)."""

import base64
import ipaddress
import random
import struct
import time

from . import flow as _flow
from .net.dns import https_records
from .connection import Client, Server


class types:
    A = 1
    NS = 2
    MD = 3
    MF = 4
    CNAME = 5
    SOA = 6
    MB = 7
    MG = 8
    MR = 9
    NULL = 10
    WKS = 11
    PTR = 12
    HINFO = 13
    MINFO = 14
    MX = 15
    TXT = 16
    AAAA = 28
    SRV = 33
    NAPTR = 35
    OPT = 41
    DS = 43
    RRSIG = 46
    NSEC = 47
    DNSKEY = 48
    SVCB = 64
    HTTPS = 65
    SPF = 99
    AXFR = 252
    ANY = 255
    CAA = 257

    @classmethod
    def to_str(cls, value):
        return _name_of(cls, value, "TYPE")

    @classmethod
    def from_str(cls, name):
        return _value_of(cls, name, "TYPE")


class classes:
    IN = 1
    CS = 2
    CH = 3
    HS = 4
    NONE = 254
    ANY = 255

    @classmethod
    def to_str(cls, value):
        return _name_of(cls, value, "CLASS")

    @classmethod
    def from_str(cls, name):
        return _value_of(cls, name, "CLASS")


class op_codes:
    QUERY = 0
    IQUERY = 1
    STATUS = 2
    NOTIFY = 4
    UPDATE = 5
    DSO = 6

    @classmethod
    def to_str(cls, op_code):
        return _name_of(cls, op_code, "OPCODE")

    @classmethod
    def from_str(cls, name):
        return _value_of(cls, name, "OPCODE")


def _name_of(table, value, prefix):
    """A constant's name in `table`, or `PREFIX(value)` for one it lacks."""
    for name, v in vars(table).items():
        if name.isupper() and v == value:
            return name
    return f"{prefix}({value})"


def _value_of(table, name, prefix):
    value = vars(table).get(name)
    if isinstance(value, int) and name.isupper():
        return value
    if name.startswith(f"{prefix}(") and name.endswith(")"):
        return int(name[len(prefix) + 1:-1])
    raise ValueError(f"unknown {prefix.lower()}: {name}")


class response_codes:
    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5
    YXDOMAIN = 6
    YXRRSET = 7
    NXRRSET = 8
    NOTAUTH = 9
    NOTZONE = 10

    @classmethod
    def to_str(cls, value):
        return _name_of(cls, value, "RCODE")

    @classmethod
    def from_str(cls, name):
        return _value_of(cls, name, "RCODE")

    @staticmethod
    def http_equiv_status_code(response_code):
        """The HTTP status code closest to a DNS response code."""
        return {0: 200, 1: 400, 2: 500, 3: 404, 4: 501, 5: 403}.get(response_code, 500)


class Question:
    def __init__(self, name, type, class_):
        self.name, self.type, self.class_ = name, type, class_

    def get_state(self):
        return {"name": self.name, "type": self.type, "class_": self.class_}

    @classmethod
    def from_state(cls, state):
        return cls(state["name"], state["type"], state["class_"])

    def __eq__(self, other):
        return isinstance(other, Question) and self.get_state() == other.get_state()

    def __repr__(self):
        return f"Question({self.name!r}, {self.type}, {self.class_})"

    def __str__(self):
        return self.name

    def to_json(self):
        return {"name": self.name, "type": types.to_str(self.type),
                "class": classes.to_str(self.class_)}

    @classmethod
    def from_json(cls, data):
        return cls(data["name"], types.from_str(data["type"]), classes.from_str(data["class"]))


class ResourceRecord:
    DEFAULT_TTL = 60

    def __init__(self, name, type, class_, ttl, data):
        self.name, self.type, self.class_, self.ttl, self.data = name, type, class_, ttl, data

    def get_state(self):
        return {"name": self.name, "type": self.type, "class_": self.class_, "ttl": self.ttl,
                "data": self.data}

    def _data_json(self):
        """The record's data as mitmproxy shows it: an address, a name, a text, an HTTPS
        record's fields (a dict), or hex."""
        try:
            if self.type == types.A:
                return str(self.ipv4_address)
            if self.type == types.AAAA:
                return str(self.ipv6_address)
            if self.type in (types.NS, types.CNAME, types.PTR):
                return self.domain_name
            if self.type == types.TXT:
                return self.text
            if self.type == types.HTTPS:
                return https_records.unpack(self.data).to_json()
        except (ValueError, struct.error, IndexError):
            return f"0x{self.data.hex()} (invalid {types.to_str(self.type)} data)"
        return f"0x{self.data.hex()}"

    def __str__(self):
        return str(self._data_json())

    @classmethod
    def from_state(cls, state):
        return cls(state["name"], state["type"], state["class_"], state["ttl"], state["data"])

    @property
    def ipv4_address(self):
        return ipaddress.IPv4Address(self.data)

    @property
    def ipv6_address(self):
        return ipaddress.IPv6Address(self.data)

    @property
    def text(self):
        return self.data.decode("utf-8")

    @text.setter
    def text(self, value):
        self.data = value.encode("utf-8")

    @ipv4_address.setter
    def ipv4_address(self, ip):
        self.data = ipaddress.IPv4Address(ip).packed

    @ipv6_address.setter
    def ipv6_address(self, ip):
        self.data = ipaddress.IPv6Address(ip).packed

    @property
    def domain_name(self):
        """The name a CNAME, NS or PTR record points to."""
        return _unpack_name(self.data, 0)[0]

    @domain_name.setter
    def domain_name(self, name):
        self.data = _pack_name(name)

    def __eq__(self, other):
        return isinstance(other, ResourceRecord) and self.get_state() == other.get_state()

    def to_json(self):
        return {"name": self.name, "type": types.to_str(self.type),
                "class": classes.to_str(self.class_), "ttl": self.ttl, "data": self._data_json()}

    @classmethod
    def from_json(cls, data):
        """The inverse of `to_json` (data as the view shows it: an address, a name, a text,
        or `0x...` hex)."""
        record = cls(data["name"], types.from_str(data["type"]), classes.from_str(data["class"]),
                     data["ttl"], b"")
        text = data["data"]
        try:
            if record.type == types.A:
                record.ipv4_address = text
            elif record.type == types.AAAA:
                record.ipv6_address = text
            elif record.type in (types.NS, types.CNAME, types.PTR):
                record.domain_name = text
            elif record.type == types.TXT:
                record.text = text
            elif record.type == types.HTTPS and isinstance(text, dict):
                record.data = https_records.pack(https_records.HTTPSRecord.from_json(text))
            else:
                raise ValueError(text)
        except ValueError:
            record.data = bytes.fromhex(text.removeprefix("0x").partition(" (")[0])
        return record

    def _https_param(self, key):
        return https_records.unpack(self.data).params.get(key.value)

    def _set_https_param(self, key, value):
        record = https_records.unpack(self.data)
        if value is None:
            record.params.pop(key.value, None)
        else:
            record.params[key.value] = value
        self.data = https_records.pack(record)

    @property
    def https_alpn(self):
        """The ALPN protocols of an HTTPS record (a tuple of bytes), or None."""
        raw = self._https_param(https_records.SVCParamKeys.ALPN)
        if raw is None:
            return None
        protocols, i = [], 0
        while i < len(raw):
            protocols.append(raw[i + 1:i + 1 + raw[i]])
            i += raw[i] + 1
        return tuple(protocols)

    @https_alpn.setter
    def https_alpn(self, alpn):
        value = None if alpn is None else b"".join(bytes([len(a)]) + a for a in alpn)
        self._set_https_param(https_records.SVCParamKeys.ALPN, value)

    @property
    def https_ech(self):
        """The ECH configuration of an HTTPS record (base64), or None."""
        raw = self._https_param(https_records.SVCParamKeys.ECH)
        return None if raw is None else base64.b64encode(raw).decode()

    @https_ech.setter
    def https_ech(self, ech):
        value = None if ech is None else base64.b64decode(ech.encode())
        self._set_https_param(https_records.SVCParamKeys.ECH, value)

    @classmethod
    def HTTPS(cls, name, record, ttl=DEFAULT_TTL):
        return cls(name, types.HTTPS, classes.IN, ttl, https_records.pack(record))

    @classmethod
    def CNAME(cls, name, alias, ttl=DEFAULT_TTL):
        return cls(name, types.CNAME, classes.IN, ttl, _pack_name(alias))

    @classmethod
    def PTR(cls, name, ptr, ttl=DEFAULT_TTL):
        return cls(name, types.PTR, classes.IN, ttl, _pack_name(ptr))

    @classmethod
    def NS(cls, name, ns, ttl=DEFAULT_TTL):
        return cls(name, types.NS, classes.IN, ttl, _pack_name(ns))

    @classmethod
    def A(cls, name, ip, ttl=DEFAULT_TTL):
        return cls(name, types.A, classes.IN, ttl, ipaddress.IPv4Address(ip).packed)

    @classmethod
    def AAAA(cls, name, ip, ttl=DEFAULT_TTL):
        return cls(name, types.AAAA, classes.IN, ttl, ipaddress.IPv6Address(ip).packed)

    @classmethod
    def TXT(cls, name, text, ttl=DEFAULT_TTL):
        return cls(name, types.TXT, classes.IN, ttl, text.encode())

    def __repr__(self):
        return f"ResourceRecord({self.name!r}, {self.type}, {self.data!r})"


class DNSMessage:
    _FLAGS = ("id", "query", "op_code", "authoritative_answer", "truncation",
              "recursion_desired", "recursion_available", "reserved", "response_code")

    def __init__(self, timestamp=None, id=0, query=True, op_code=0, authoritative_answer=False,
                 truncation=False, recursion_desired=True, recursion_available=False,
                 reserved=0, response_code=0, questions=(), answers=(), authorities=(),
                 additionals=()):
        self.timestamp = timestamp
        self.id, self.query, self.op_code = id, query, op_code
        self.authoritative_answer, self.truncation = authoritative_answer, truncation
        self.recursion_desired, self.recursion_available = recursion_desired, recursion_available
        self.reserved, self.response_code = reserved, response_code
        self.questions = list(questions)
        self.answers = list(answers)
        self.authorities = list(authorities)
        self.additionals = list(additionals)

    def __str__(self):
        return "\r\n".join(map(str, [*self.questions, *self.answers, *self.authorities,
                                       *self.additionals]))

    def __eq__(self, other):
        return isinstance(other, DNSMessage) and self.get_state() == other.get_state()

    __hash__ = object.__hash__

    def copy(self):
        """A copy with a new random id."""
        copied = DNSMessage.from_state(self.get_state())
        copied.id = random.randint(0, 65535)
        return copied

    @property
    def size(self):
        """The data size of all resource records."""
        return sum(len(rr.data) for rr in [*self.answers, *self.authorities, *self.additionals])

    def to_json(self):
        """The message as mitmweb shows it."""
        out = {
            "id": self.id, "query": self.query, "op_code": op_codes.to_str(self.op_code),
            "authoritative_answer": self.authoritative_answer, "truncation": self.truncation,
            "recursion_desired": self.recursion_desired,
            "recursion_available": self.recursion_available,
            "response_code": response_codes.to_str(self.response_code),
            "status_code": response_codes.http_equiv_status_code(self.response_code),
            "questions": [q.to_json() for q in self.questions],
            "answers": [rr.to_json() for rr in self.answers],
            "authorities": [rr.to_json() for rr in self.authorities],
            "additionals": [rr.to_json() for rr in self.additionals],
            "size": self.size,
        }
        if self.timestamp:
            out["timestamp"] = self.timestamp
        return out

    @classmethod
    def from_json(cls, data):
        return cls(
            data.get("timestamp"), data["id"], data["query"], op_codes.from_str(data["op_code"]),
            data["authoritative_answer"], data["truncation"], data["recursion_desired"],
            data["recursion_available"], 0, response_codes.from_str(data["response_code"]),
            [Question.from_json(q) for q in data["questions"]],
            [ResourceRecord.from_json(rr) for rr in data["answers"]],
            [ResourceRecord.from_json(rr) for rr in data["authorities"]],
            [ResourceRecord.from_json(rr) for rr in data["additionals"]])

    @property
    def content(self):
        """The message in wire format (settable)."""
        return self.packed

    @content.setter
    def content(self, data):
        self.set_state(DNSMessage.unpack(data, self.timestamp).get_state())

    @classmethod
    def unpack(cls, buffer, timestamp=None):
        """A message from wire format (RFC 1035 section 4); struct.error if the bytes are
        truncated or too long, ValueError for an invalid name."""
        try:
            return _unpack(buffer, timestamp if timestamp is not None else time.time())
        except IndexError as e:  # a name runs past the end: truncated, as struct reports it
            raise struct.error(f"truncated DNS message: {e}") from None
        except UnicodeError as e:
            raise ValueError(f"invalid DNS name: {e}") from None

    @property
    def question(self):
        return self.questions[0] if len(self.questions) == 1 else None

    def get_state(self):
        state = {k: getattr(self, k) for k in self._FLAGS}
        state["questions"] = [q.get_state() for q in self.questions]
        for k in ("answers", "authorities", "additionals"):
            state[k] = [r.get_state() for r in getattr(self, k)]
        state["timestamp"] = self.timestamp
        return state

    def set_state(self, state):
        for k in self._FLAGS:
            setattr(self, k, state[k])
        self.questions = [Question.from_state(q) for q in state["questions"]]
        for k in ("answers", "authorities", "additionals"):
            setattr(self, k, [ResourceRecord.from_state(r) for r in state[k]])
        self.timestamp = state["timestamp"]

    @classmethod
    def from_state(cls, state):
        msg = cls()
        msg.set_state(state)
        return msg

    def _response(self, response_code, answers):
        return DNSMessage(time.time(), self.id, False, self.op_code, False, False,
                          self.recursion_desired, True, 0, response_code, self.questions,
                          answers, [], [])

    def succeed(self, answers):
        return self._response(response_codes.NOERROR, answers)

    def fail(self, response_code):
        if response_code == response_codes.NOERROR:
            raise ValueError("response_code must be an error code, not NOERROR")
        return self._response(response_code, [])

    @property
    def packed(self):
        """The message in wire format (RFC 1035 section 4), names compressed; ValueError for
        a header field out of range."""
        for field, top in (("id", 0xFFFF), ("reserved", 7), ("op_code", 15),
                           ("response_code", 15)):
            if not 0 <= getattr(self, field) <= top:
                raise ValueError(f"{field} must be between 0 and {top}")
        flags = ((0 if self.query else 1) << 15 | self.op_code << 11
                 | self.authoritative_answer << 10 | self.truncation << 9
                 | self.recursion_desired << 8 | self.recursion_available << 7
                 | self.reserved << 4 | self.response_code)
        out = bytearray(struct.pack("!HHHHHH", self.id, flags, len(self.questions),
                                    len(self.answers), len(self.authorities),
                                    len(self.additionals)))
        offsets = {}
        for q in self.questions:
            out += _pack_name(q.name, offsets, len(out)) + struct.pack("!HH", q.type, q.class_)
        for rr in self.answers + self.authorities + self.additionals:
            out += _pack_name(rr.name, offsets, len(out))
            out += struct.pack("!HHIH", rr.type, rr.class_, rr.ttl, len(rr.data)) + rr.data
        return bytes(out)


Message = DNSMessage


def _unpack_name(buffer, offset, depth=0):
    """`(name, offset after it)`, following compression pointers (RFC 1035 4.1.4)."""
    labels, end = [], None
    while True:
        if depth > 64:
            raise ValueError("DNS name compression loop")
        length = buffer[offset]
        if length & 0xC0 == 0xC0:
            pointer = struct.unpack_from("!H", buffer, offset)[0] & 0x3FFF
            if end is None:
                end = offset + 2
            offset, depth = pointer, depth + 1
            continue
        offset += 1
        if length == 0:
            break
        labels.append(buffer[offset:offset + length].decode("idna"))
        offset += length
    return ".".join(labels), end if end is not None else offset


def _name_bytes(buffer, offset, depth=0):
    """`(uncompressed name in wire format, offset after it)`: labels copied byte for byte,
    pointers followed (RFC 1035 4.1.4)."""
    out, end = b"", None
    while True:
        if depth > 64:
            raise ValueError("DNS name compression loop")
        length = buffer[offset]
        if length & 0xC0 == 0xC0:
            if end is None:
                end = offset + 2
            offset, depth = struct.unpack_from("!H", buffer, offset)[0] & 0x3FFF, depth + 1
            continue
        out += buffer[offset:offset + 1 + length]
        offset += 1 + length
        if length == 0:
            return out, end if end is not None else offset


# Where the compressible names sit in a record's data: (fixed bytes before, names, rest).
_NAMES_IN_DATA = {types.NS: (0, 1), types.CNAME: (0, 1), types.PTR: (0, 1), types.SOA: (0, 2),
                  types.MX: (2, 1), types.SRV: (6, 1)}


def _decompress_record(buffer, offset, rtype, data):
    """A record's data with its names uncompressed (pointers refer to the whole message);
    the data as it came if that fails."""
    if rtype not in _NAMES_IN_DATA:
        return data
    prefix, names = _NAMES_IN_DATA[rtype]
    try:
        out, pos = buffer[offset:offset + prefix], offset + prefix
        for _ in range(names):
            name, pos = _name_bytes(buffer, pos)
            out += name
        return out + buffer[pos:offset + len(data)]
    except (IndexError, ValueError, struct.error):
        return data


def _unpack(buffer, timestamp):
    ident, flags, nq, nan, nau, nad = struct.unpack_from("!HHHHHH", buffer, 0)
    offset = 12
    questions = []
    for _ in range(nq):
        name, offset = _unpack_name(buffer, offset)
        qtype, qclass = struct.unpack_from("!HH", buffer, offset)
        offset += 4
        questions.append(Question(name, qtype, qclass))
    sections = []
    for count in (nan, nau, nad):
        records = []
        for _ in range(count):
            name, offset = _unpack_name(buffer, offset)
            rtype, rclass, ttl, size = struct.unpack_from("!HHIH", buffer, offset)
            offset += 10
            data = buffer[offset:offset + size]
            if len(data) != size:
                raise struct.error("truncated resource record")
            data = _decompress_record(buffer, offset, rtype, bytes(data))
            offset += size
            records.append(ResourceRecord(name, rtype, rclass, ttl, bytes(data)))
        sections.append(records)
    if offset != len(buffer):
        raise struct.error(f"unpack requires a buffer of {offset} bytes")
    return DNSMessage(timestamp, ident, not flags >> 15, (flags >> 11) & 0xF,
                      bool(flags >> 10 & 1), bool(flags >> 9 & 1), bool(flags >> 8 & 1),
                      bool(flags >> 7 & 1), (flags >> 4) & 0x7, flags & 0xF, questions,
                      *sections)


def _pack_name(name, offsets=None, at=0):
    """A name in wire format; with `offsets` (suffix -> position, updated), a suffix already
    written becomes a pointer (RFC 1035 4.1.4). `at` is where the name will be written."""
    labels = [label for label in name.rstrip(".").split(".") if label]
    out = b""
    for i in range(len(labels)):
        suffix = ".".join(labels[i:]).lower()
        if offsets is not None and suffix in offsets:
            return out + struct.pack("!H", 0xC000 | offsets[suffix])
        if offsets is not None and at + len(out) < 0x4000:
            offsets[suffix] = at + len(out)
        encoded = labels[i].encode("idna")
        out += bytes([len(encoded)]) + encoded
    return out + b"\x00"


class DNSFlow(_flow.Flow):
    """A DNS query and its response."""

    type = "dns"

    def __init__(self, client_conn, server_conn, live=False):
        super().__init__(client_conn, server_conn, live)
        self.request = None
        self.response = None

    def _init_empty(self):
        DNSFlow.__init__(self, Client(), Server())

    def get_state(self):
        state = self._common_state()
        state["request"] = self.request.get_state() if self.request else None
        state["response"] = self.response.get_state() if self.response else None
        return state

    def _set_type_state(self, state):
        req, resp = state.pop("request"), state.pop("response")
        self.request = DNSMessage.from_state(req) if req else None
        self.response = DNSMessage.from_state(resp) if resp else None
