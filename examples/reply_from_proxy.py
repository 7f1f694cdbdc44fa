"""Answer requests for /hello from the proxy itself: no upstream connection is made."""

from mitmproxy import http


def request(flow):
    if flow.request.path == "/hello":
        flow.response = http.Response.make(
            200, b"Hello from the proxy\n", {"Content-Type": "text/plain"}
        )
