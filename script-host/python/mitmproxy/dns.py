"""`mitmproxy.dns`: DNS flows and messages (fields as in mitmproxy's state)."""

import ipaddress
import struct
import time

from . import flow as _flow
from .connection import Client, Server


class types:
    A = 1
    NS = 2
    CNAME = 5
    SOA = 6
    PTR = 12
    MX = 15
    TXT = 16
    AAAA = 28
    SRV = 33
    HTTPS = 65


class classes:
    IN = 1


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


class ResourceRecord:
    DEFAULT_TTL = 60

    def __init__(self, name, type, class_, ttl, data):
        self.name, self.type, self.class_, self.ttl, self.data = name, type, class_, ttl, data

    def get_state(self):
        return {"name": self.name, "type": self.type, "class_": self.class_, "ttl": self.ttl,
                "data": self.data}

    def __str__(self):
        """The record's data as mitmproxy shows it: an address, a text, or hex."""
        try:
            if self.type == types.A:
                return str(self.ipv4_address)
            if self.type == types.AAAA:
                return str(self.ipv6_address)
            if self.type == types.TXT:
                return self.text
        except ValueError:
            return f"0x{self.data.hex()} (invalid data)"
        return f"0x{self.data.hex()}"

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
        return self._response(response_code, [])

    @property
    def packed(self):
        flags = ((0 if self.query else 1) << 15 | self.op_code << 11
                 | self.authoritative_answer << 10 | self.truncation << 9
                 | self.recursion_desired << 8 | self.recursion_available << 7
                 | self.reserved << 4 | self.response_code)
        out = struct.pack("!HHHHHH", self.id, flags, len(self.questions), len(self.answers),
                          len(self.authorities), len(self.additionals))
        for q in self.questions:
            out += _pack_name(q.name) + struct.pack("!HH", q.type, q.class_)
        for rr in self.answers + self.authorities + self.additionals:
            out += _pack_name(rr.name) + struct.pack("!HHIH", rr.type, rr.class_, rr.ttl, len(rr.data))
            out += rr.data
        return out


Message = DNSMessage


def _pack_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            encoded = label.encode("idna")
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
