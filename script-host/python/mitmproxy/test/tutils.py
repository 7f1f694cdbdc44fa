"""`mitmproxy.test.tutils`: ready-made requests, responses and DNS messages for tests.

Each takes keyword arguments that replace its defaults. The defaults are mitmproxy's, so a
test written against mitmproxy's helpers sees the same values here.
"""

from mitmproxy import dns
from mitmproxy import http

_GOOGLE_A = ("dns.google", dns.types.A, dns.classes.IN)


def _dns_message(timestamp, query, answers, kwargs):
    fields = {
        "timestamp": timestamp,
        "id": 42,
        "query": query,
        "op_code": dns.op_codes.QUERY,
        "authoritative_answer": False,
        "truncation": False,
        "recursion_desired": True,
        "recursion_available": not query,
        "reserved": 0,
        "response_code": dns.response_codes.NOERROR,
        "questions": [dns.Question(*_GOOGLE_A)],
        "answers": answers,
        "authorities": [],
        "additionals": [],
    }
    fields.update(kwargs)
    return dns.DNSMessage(**fields)


def tdnsreq(**kwargs):
    """A query for dns.google's A record."""
    return _dns_message(946681200, True, [], kwargs)


def tdnsresp(**kwargs):
    """The answer to `tdnsreq()`: 8.8.8.8 and 8.8.4.4."""
    answers = [dns.ResourceRecord(*_GOOGLE_A, 32, bytes(ip)) for ip in ((8, 8, 8, 8), (8, 8, 4, 4))]
    return _dns_message(946681201, False, answers, kwargs)


def treq(**kwargs):
    """`GET http://address:22/path` with a 7-byte body."""
    fields = {
        "host": "address",
        "port": 22,
        "method": b"GET",
        "scheme": b"http",
        "authority": b"",
        "path": b"/path",
        "http_version": b"HTTP/1.1",
        "headers": http.Headers(((b"header", b"qvalue"), (b"content-length", b"7"))),
        "content": b"content",
        "trailers": None,
        "timestamp_start": 946681200,
        "timestamp_end": 946681201,
    }
    fields.update(kwargs)
    return http.Request(**fields)


def tresp(**kwargs):
    """`HTTP/1.1 200 OK` with the body `message`."""
    fields = {
        "http_version": b"HTTP/1.1",
        "status_code": 200,
        "reason": b"OK",
        "headers": http.Headers(((b"header-response", b"svalue"), (b"content-length", b"7"))),
        "content": b"message",
        "trailers": None,
        "timestamp_start": 946681202,
        "timestamp_end": 946681203,
    }
    fields.update(kwargs)
    return http.Response(**fields)
