import gzip
import unittest
import zlib

from tests.support import http_state  # noqa: F401  (sets sys.path)
from mitmproxy import flow as mflow, http, tcp, websocket, connection
from mitmproxy.exceptions import ControlException


class HeadersTest(unittest.TestCase):
    def test_case_insensitive_ordered_multidict(self):
        h = http.Headers([(b"Host", b"x"), (b"Set-Cookie", b"a=1"), (b"set-cookie", b"b=2")])
        self.assertEqual(h["host"], "x")
        self.assertEqual(h["SET-COOKIE"], "a=1, b=2")
        self.assertEqual(h.get_all("set-cookie"), ["a=1", "b=2"])
        h["Set-Cookie"] = "c=3"
        self.assertEqual(h.fields, ((b"Host", b"x"), (b"Set-Cookie", b"c=3")))
        h.add("X-A", "1")
        h.insert(0, "X-First", "0")
        self.assertEqual(list(h.keys()), ["X-First", "Host", "Set-Cookie", "X-A"])
        self.assertEqual(h.items(multi=True)[0], ("X-First", "0"))
        self.assertEqual(bytes(h), b"X-First: 0\r\nHost: x\r\nSet-Cookie: c=3\r\nX-A: 1\r\n")
        del h["x-a"]
        self.assertNotIn("X-A", h)
        self.assertEqual(len(h), 3)

    def test_constructor_checks_and_kwargs(self):
        with self.assertRaises(TypeError):
            http.Headers([("str", "not bytes")])
        self.assertEqual(http.Headers(content_type="text/html").fields,
                         ((b"content-type", b"text/html"),))

    def test_old_api_list_assignment(self):
        h = http.Headers()
        h["newheader"] = ["foo", "bar"]
        self.assertEqual(h.get_all("newheader"), ["foo", "bar"])

    def test_set_all_keeps_position_and_spelling(self):
        h = http.Headers([(b"A", b"1"), (b"Content-Type", b"x"), (b"B", b"2")])
        h["content-type"] = "y"
        self.assertEqual(h.fields[1], (b"Content-Type", b"y"))


class RequestTest(unittest.TestCase):
    def test_make_and_url_parts(self):
        r = http.Request.make("POST", "https://example.com:8443/a/b?x=1&y=2", "hi",
                              {"Content-Type": "text/plain"})
        self.assertEqual((r.scheme, r.host, r.port, r.path), ("https", "example.com", 8443, "/a/b?x=1&y=2"))
        self.assertEqual(r.url, "https://example.com:8443/a/b?x=1&y=2")
        self.assertEqual(r.content, b"hi")
        self.assertEqual(r.headers["content-length"], "2")
        self.assertEqual(r.path_components, ("a", "b"))

    def test_query_is_live(self):
        r = http.Request.make("GET", "http://e.com/p?a=1&b=2")
        r.query["a"] = "9"
        r.query.add("c", "3")
        self.assertEqual(r.path, "/p?a=9&b=2&c=3")
        del r.query["b"]
        self.assertEqual(r.path, "/p?a=9&c=3")

    def test_host_setter_updates_host_header(self):
        r = http.Request.make("GET", "http://e.com/")
        r.headers["Host"] = "e.com"
        r.host = "other.org"
        self.assertEqual(r.headers["Host"], "other.org")
        r.port = 8080
        self.assertEqual(r.headers["Host"], "other.org:8080")
        self.assertEqual(r.pretty_url, "http://other.org:8080/")

    def test_pretty_host_prefers_host_header(self):
        r = http.Request.make("GET", "http://10.0.0.1/x")
        r.headers["Host"] = "example.com"
        self.assertEqual(r.pretty_host, "example.com")
        self.assertEqual(r.host, "10.0.0.1")
        self.assertEqual(r.pretty_url, "http://example.com/x")
        r.host_header = None
        self.assertNotIn("Host", r.headers)

    def test_cookies_and_forms(self):
        r = http.Request.make("POST", "http://e.com/")
        r.headers["Cookie"] = "a=1; b=2"
        self.assertEqual(r.cookies["b"], "2")
        r.cookies["a"] = "x"
        self.assertEqual(r.headers["cookie"], "a=x; b=2")
        r.urlencoded_form = [("k", "v w")]
        self.assertEqual(r.content, b"k=v+w")
        self.assertEqual(r.urlencoded_form["k"], "v w")
        r.multipart_form = [(b"f", b"data")]
        self.assertEqual(r.multipart_form[b"f"], b"data")
        self.assertIn("multipart/form-data", r.headers["content-type"])

    def test_method_setter_and_text(self):
        r = http.Request.make("get", "http://e.com/")
        self.assertEqual(r.method, "GET")
        r.headers["content-type"] = "application/json"
        r.text = '{"é": 1}'
        self.assertEqual(r.json(), {"é": 1})
        self.assertEqual(r.raw_content, '{"é": 1}'.encode())
        with self.assertRaises(TypeError):
            r.content = "str is rejected"


class ResponseTest(unittest.TestCase):
    def test_make(self):
        r = http.Response.make(418, b"teapot", {"Content-Type": "text/plain"})
        self.assertEqual((r.status_code, r.reason, r.http_version), (418, "I'm a teapot", "HTTP/1.1"))
        self.assertEqual(r.headers.fields[-1], (b"content-length", b"6"))

    def test_encodings_decoded_and_reencoded(self):
        r = http.Response.make(200)
        r.headers["Content-Encoding"] = "gzip"
        r.raw_content = gzip.compress(b"hello")
        self.assertEqual(r.content, b"hello")
        r.content = b"bye"
        self.assertEqual(gzip.decompress(r.raw_content), b"bye")
        r.headers["content-encoding"] = "deflate"
        r.raw_content = zlib.compress(b"deflated")
        self.assertEqual(r.text, "deflated")
        r.headers["content-encoding"] = "deflate"
        r.raw_content = zlib.compress(b"raw")[2:-4]
        self.assertEqual(r.content, b"raw")

    def test_br_without_brotli_names_the_package(self):
        try:
            import brotli  # noqa: F401
            self.skipTest("brotli is installed")
        except ImportError:
            pass
        r = http.Response.make(200)
        r.headers["Content-Encoding"] = "br"
        r.raw_content = b"\x1b\x00"
        with self.assertRaisesRegex(ValueError, "brotli"):
            r.content
        self.assertEqual(r.get_content(strict=False), b"\x1b\x00")

    def test_cookies(self):
        r = http.Response.make(200)
        r.headers.add("Set-Cookie", "sid=abc; Path=/; HttpOnly")
        value, attrs = r.cookies["sid"]
        self.assertEqual(value, "abc")
        self.assertEqual(attrs["Path"], "/")
        r.cookies["sid"] = ("new", attrs)
        self.assertEqual(r.headers["set-cookie"], "sid=new; Path=/; HttpOnly")


class StateTest(unittest.TestCase):
    def test_http_roundtrip_in_mitmproxy_shape(self):
        state = http_state("/x")
        state.pop("live")
        f = mflow.Flow.from_state(state)
        self.assertIsInstance(f, http.HTTPFlow)
        out = f.get_state()
        self.assertEqual(list(out)[:13], ["version", "type", "id", "error", "client_conn",
                                          "server_conn", "intercepted", "is_replay", "marked",
                                          "metadata", "comment", "timestamp_created", "backup"])
        self.assertEqual(list(out)[13:], ["request", "response", "websocket"])
        self.assertEqual(list(out["request"]), ["http_version", "headers", "content", "trailers",
                                                "timestamp_start", "timestamp_end", "host", "port",
                                                "method", "scheme", "authority", "path"])
        self.assertEqual(out["request"]["path"], b"/x")
        self.assertEqual(out["request"]["host"], "example.com")

    def test_unknown_keys_rejected(self):
        state = http_state()
        state["bogus"] = 1
        with self.assertRaises(ValueError):
            mflow.Flow.from_state(state)

    def test_copy_kill_intercept(self):
        state = http_state()
        f = mflow.Flow.from_state(state)
        c = f.copy()
        self.assertNotEqual(c.id, f.id)
        self.assertFalse(c.live)
        f.intercept()
        self.assertTrue(f.intercepted)
        f.resume()
        self.assertFalse(f.intercepted)
        f.kill()
        self.assertEqual(f.error.msg, "Connection killed.")
        with self.assertRaises(ControlException):
            f.kill()

    def test_tcp_and_websocket(self):
        f = tcp.TCPFlow(connection.Client(), connection.Server())
        f.messages.append(tcp.TCPMessage(True, b"hi"))
        g = mflow.Flow.from_state(f.get_state())
        self.assertEqual(g.messages[0].content, b"hi")
        ws = websocket.WebSocketData()
        ws.messages.append(websocket.WebSocketMessage(1, True, b"t"))
        self.assertEqual(ws.messages[0].text, "t")
        ws.messages[0].drop()
        self.assertTrue(websocket.WebSocketData.from_state(ws.get_state()).messages[0].dropped)


if __name__ == "__main__":
    unittest.main()
