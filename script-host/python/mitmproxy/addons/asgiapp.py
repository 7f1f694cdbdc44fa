"""`mitmproxy.addons.asgiapp`: serve a Python web app from inside the proxy.

`addons = [WSGIApp(flask_app, "example.com", 80)]` answers every request for that host (and
port; `None`: any port) from the app in the `request` hook, so the request never leaves the
proxy; other requests pass. `ASGIApp` does the same for an ASGI application. As in mitmproxy,
a flow that already has a response or an error, or is not live (read from a file), is left
alone.

The ASGI side speaks the HTTP part of the ASGI 3 protocol (one `http.request` with the whole
body, then `http.disconnect`); the WSGI side calls the app in a thread as PEP 3333 describes.
"""

import asyncio
import io
import logging
import sys
import urllib.parse

from mitmproxy import http

log = logging.getLogger(__name__)


class ASGIApp:
    """Answers requests for `host`:`port` from `asgi_app` (an ASGI 3 callable)."""

    def __init__(self, asgi_app, host, port=None):
        self.asgi_app = asgi_app
        self.host = host
        self.port = port

    @property
    def name(self):
        return f"asgiapp:{self.host}:{self.port}"

    def should_serve(self, flow):
        """True when the app answers this flow."""
        return bool(
            flow.request.pretty_host == self.host
            and (self.port is None or flow.request.port == self.port)
            and flow.live
            and not flow.error
            and not flow.response
        )

    async def request(self, flow):
        if self.should_serve(flow):
            await serve_asgi(self.asgi_app, flow)


class WSGIApp(ASGIApp):
    """Answers requests for `host`:`port` from `wsgi_app` (a WSGI callable)."""

    def __init__(self, wsgi_app, host, port=None):
        super().__init__(None, host, port)
        self.wsgi_app = wsgi_app

    async def request(self, flow):
        if self.should_serve(flow):
            status, headers, body = await asyncio.to_thread(call_wsgi, self.wsgi_app, flow)
            flow.response = http.Response.make(status, body, headers)


def _path_and_query(request):
    path, _, query = request.path.partition("?")
    return urllib.parse.unquote(path), query


def call_wsgi(app, flow):
    """Runs a WSGI app for the flow's request: (status code, [(name, value)], body)."""
    request = flow.request
    path, query = _path_and_query(request)
    environ = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": request.pretty_host,
        "SERVER_PORT": str(request.port),
        "SERVER_PROTOCOL": request.http_version,
        "CONTENT_TYPE": request.headers.get("content-type", ""),
        "CONTENT_LENGTH": str(len(request.raw_content or b"")),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": request.scheme,
        "wsgi.input": io.BytesIO(request.content or b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    client = getattr(flow.client_conn, "peername", None)
    if client:
        environ["REMOTE_ADDR"] = str(client[0])
    for name, value in request.headers.items(multi=True):
        key = "HTTP_" + name.upper().replace("-", "_")
        if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
            continue
        environ[key] = f"{environ[key]},{value}" if key in environ else value

    started = {}

    def start_response(status, headers, exc_info=None):
        if exc_info and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started["status"] = int(status.split(" ", 1)[0])
        started["headers"] = [(str(k), str(v)) for k, v in headers]
        return lambda data: chunks.append(data)

    chunks = []
    result = app(environ, start_response)
    try:
        for data in result:
            chunks.append(data)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return started.get("status", 500), started.get("headers", []), b"".join(chunks)


async def serve_asgi(app, flow):
    """Runs an ASGI app for the flow's request and sets `flow.response` from what it sends."""
    request = flow.request
    path, query = _path_and_query(request)
    client = getattr(flow.client_conn, "peername", None) or ("127.0.0.1", 0)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.1"},
        "http_version": request.http_version.split("/")[-1],
        "method": request.method,
        "scheme": request.scheme,
        "path": path,
        "raw_path": request.path.partition("?")[0].encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in request.headers.items(multi=True)],
        "client": tuple(client[:2]),
        "server": (request.pretty_host, request.port),
        "extensions": {},
    }
    body_sent = False
    done = asyncio.Event()
    response = {"status": None, "headers": [], "body": []}

    async def receive():
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": request.content or b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(event):
        if event["type"] == "http.response.start":
            response["status"] = event["status"]
            response["headers"] = [(bytes(k), bytes(v)) for k, v in event.get("headers", [])]
        elif event["type"] == "http.response.body":
            response["body"].append(event.get("body", b""))
            if not event.get("more_body", False):
                done.set()

    try:
        await app(scope, receive, send)
    except Exception as e:
        log.error("ASGI app failed: %s", e)
        flow.response = http.Response.make(500, f"ASGI Error: {e}".encode())
        return
    finally:
        done.set()
    flow.response = http.Response.make(
        response["status"] or 500, b"".join(response["body"]), response["headers"])
