"""The origins of the scenarios, all on 127.0.0.1 with ephemeral ports: an HTTP/1.1 origin
(plain or TLS) that answers by path and can act as an upstream proxy, an HTTP/2 origin with
trailers, a raw TCP echo and a WebSocket echo."""

import http.server
import socket
import socketserver
import ssl
import threading

HTML = ('<html><head><title>t</title></head><body><a href="rel/page">r</a> '
        "<a href='/abs'>a</a> <a href=\"https://secure.example/x\">s</a>"
        "<p>hello foo</p></body></html>")
SSLSTRIP_HTML = ('<html><head><meta http-equiv="Content-Security-Policy" '
                 'content="upgrade-insecure-requests"></head><body>'
                 '<a href="https://secure.example/login">login</a></body></html>')
# Request headers the echo leaves out: the client's own, and Proxy-Connection (hop-by-hop:
# mitmdump passes curl's on to the origin, flowtap drops it).
QUIET_HEADERS = {"user-agent", "accept", "proxy-connection"}


class Origin(http.server.ThreadingHTTPServer):
    """The origin: answers by path (see OriginHandler); plain or TLS; records what it saw."""

    daemon_threads = True

    def __init__(self, tls=None):
        super().__init__(("127.0.0.1", 0), OriginHandler)
        self.seen = []
        self.pac_proxy = None
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.socket = context.wrap_socket(self.socket, server_side=True,
                                              do_handshake_on_connect=False)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self):
        return self.server_address[1]


class OriginHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle(self):
        try:
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.do_handshake()
            super().handle()
        except (OSError, ssl.SSLError):
            pass

    def read_body(self):
        """The request body and its trailers (chunked bodies are decoded)."""
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            body, trailers = b"", []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
            while (line := self.rfile.readline().strip()):
                trailers.append(line.decode("latin-1"))
            return body, trailers
        length = int(self.headers.get("content-length") or 0)
        return (self.rfile.read(length) if length else b""), []

    def send(self, status, content_type, body, headers=()):
        body = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_chunked(self, parts, trailers=()):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        if trailers:
            self.send_header("Trailer", ", ".join(n for n, _ in trailers))
        self.end_headers()
        for part in parts:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        self.wfile.write(b"0\r\n")
        for name, value in trailers:
            self.wfile.write(f"{name}: {value}\r\n".encode())
        self.wfile.write(b"\r\n")

    def do_POST(self):
        self.do_GET()

    def do_CONNECT(self):
        """As an upstream proxy: records the CONNECT, then relays to its target."""
        headers = [(k.lower(), v) for k, v in self.headers.items()]
        self.server.seen.append({"method": "CONNECT", "path": self.path, "headers": headers,
                                 "body": "", "trailers": []})
        host, _, port = self.path.rpartition(":")
        if host != "127.0.0.1":
            # A name that does not resolve here: the tunnel leads to this origin itself.
            host, port = "127.0.0.1", self.server.port
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=15)
        except OSError:
            self.send(502, "text/plain", "no route")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        relay(self.connection, upstream)
        self.close_connection = True

    def do_PUT(self):
        self.do_GET()

    def do_GET(self):
        body, trailers = self.read_body()
        headers = [(k.lower(), v) for k, v in self.headers.items()]
        self.server.seen.append({"method": self.command, "path": self.path,
                                 "headers": headers, "body": body.decode("latin-1"),
                                 "trailers": trailers})
        path = self.path
        if path.startswith("http://") or path.startswith("https://"):
            # Asked as an upstream proxy: the absolute form says where the proxy sent it.
            self.send(200, "text/plain", f"upstream saw {self.command} {path}\n")
        elif path.startswith("/html"):
            self.send(200, "text/html; charset=utf-8", HTML)
        elif path.startswith("/chunked"):
            self.send_chunked([b"one foo ", b"two foo"])
        elif path.startswith("/trailers") or path.startswith("/inject_trailers"):
            self.send_chunked([b"trailer body"], [("x-origin-trailer", "yes")])
        elif path.startswith("/cookies"):
            self.send(200, "text/plain", "cookie: " + (self.headers.get("cookie") or "-"),
                      [("Set-Cookie", "mycookie=1; Path=/"), ("Set-Cookie", "keep=2; Path=/")])
        elif path.startswith("/sslstrip"):
            self.send(302, "text/html", SSLSTRIP_HTML, [
                ("Location", "https://secure.example/next"),
                ("Strict-Transport-Security", "max-age=3600"),
                ("Content-Security-Policy", "upgrade-insecure-requests; default-src 'self'"),
                ("Set-Cookie", "sid=1; secure; HttpOnly")])
        elif path.startswith("/xss"):
            query = path.partition("?")[2]
            from urllib.parse import unquote
            self.send(200, "text/html", f"<html><body>{unquote(query)}</body></html>")
        elif path.startswith("/pac"):
            pac = ("function FindProxyForURL(url, host) { return 'PROXY 127.0.0.1:%d'; }"
                   % self.server.pac_proxy)
            self.send(200, "text/plain", pac)
        elif path.startswith("/missing"):
            self.send(404, "text/html", "<html><body>not here</body></html>")
        elif path.startswith("/example-type"):
            self.send(200, "text/example", "Hello World")
        elif path.startswith("/big"):
            self.send(200, "application/octet-stream", b"foo-" * 4096)
        else:
            quiet = QUIET_HEADERS
            if path.startswith("/echo-unframed"):
                # How the body was framed (length or chunks) left out: flowtap sends a body
                # that a script streams through a callable chunked (docs/hooks.md), mitmdump
                # keeps the Content-Length.
                quiet = quiet | {"content-length", "transfer-encoding"}
            lines = [f"{self.command} {path}"]
            lines += [f"{k}: {v}" for k, v in headers if k not in quiet]
            lines += [f"trailer {t}" for t in trailers]
            lines.append("")
            self.send(200, "text/plain", "\n".join(lines).encode() + b"\n" + body)


def relay(a, b):
    """Copies bytes both ways between two sockets until either side closes."""
    def pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
    other = threading.Thread(target=pump, args=(b, a), daemon=True)
    other.start()
    pump(a, b)
    other.join(15)
    b.close()


class H2Origin:
    """HTTP/2 over TLS (ALPN h2): answers every request with a body and the trailer
    `x-origin-trailer: yes`, and records the request trailers it got."""

    def __init__(self, cert):
        self.seen = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*cert)
        context.set_alpn_protocols(["h2"])
        self.context = context
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, raw):
        import h2.config
        import h2.connection
        import h2.events
        try:
            conn = self.context.wrap_socket(raw, server_side=True)
            h2conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
            h2conn.initiate_connection()
            conn.sendall(h2conn.data_to_send())
            requests = {}
            while data := conn.recv(65536):
                for event in h2conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        requests[event.stream_id] = {"headers": dict(event.headers),
                                                     "trailers": []}
                    elif isinstance(event, h2.events.DataReceived):
                        h2conn.acknowledge_received_data(event.flow_controlled_length,
                                                         event.stream_id)
                    elif isinstance(event, h2.events.TrailersReceived):
                        requests[event.stream_id]["trailers"] = [
                            f"{k.decode()}: {v.decode()}" for k, v in event.headers]
                    elif isinstance(event, h2.events.StreamEnded):
                        request = requests.pop(event.stream_id)
                        self.seen.append(request["trailers"])
                        h2conn.send_headers(event.stream_id, [
                            (":status", "200"), ("content-type", "text/plain"),
                            ("trailer", "x-origin-trailer")])
                        h2conn.send_data(event.stream_id, b"h2 body")
                        h2conn.send_headers(event.stream_id, [("x-origin-trailer", "yes")],
                                            end_stream=True)
                conn.sendall(h2conn.data_to_send())
        except Exception:
            pass

    def shutdown(self):
        self.sock.close()


class TcpOrigin(socketserver.ThreadingTCPServer):
    """Raw TCP: answers each read with `foo:` and what it read."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                while data := self.request.recv(4096):
                    self.request.sendall(b"foo:" + data)

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self):
        return self.server_address[1]


class WsOrigin:
    """WebSocket: greets with "Hello greeting", then echoes every message back."""

    def __init__(self):
        from websockets.sync.server import serve

        def handler(conn):
            try:
                conn.send("Hello greeting")
                for message in conn:
                    conn.send(message)
            except Exception:
                pass

        self.server = serve(handler, "127.0.0.1", 0)
        self.port = self.server.socket.getsockname()[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def shutdown(self):
        self.server.shutdown()
