"""The old-API objects (`flowtap_host.legacy`, `legacy_http`, `py2`, `libmproxy`, `netlib`):
each old behaviour a 0.11-0.18 script relied on, over today's flow."""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flowtap_host import legacy, py2  # noqa: E402
from flowtap_host.legacy_http import ChunkPump, LegacyBytes  # noqa: E402
from mitmproxy import connection, http  # noqa: E402


def make_flow(path="/p?a=1&b=2", headers=((b"Host", b"example.com"),), body=b""):
    client = connection.Client(peername=("127.0.0.1", 5), sockname=("127.0.0.1", 8080))
    flow = http.HTTPFlow(client, connection.Server(address=("example.com", 80)))
    flow.request = http.Request("example.com", 80, b"GET", b"http", b"", path.encode(),
                                b"HTTP/1.1", http.Headers(list(headers)), body, None, 0, 0)
    flow.response = http.Response.make(200, b"a foo b", {"Content-Type": "text/html"})
    return flow


class OldHeaders(unittest.TestCase):
    def test_list_values_missing_empty_and_pairs(self):
        flow = legacy.OldFlow(make_flow(headers=((b"Host", b"example.com"),
                                                 (b"Set", b"1"), (b"set", b"2"))))
        headers = flow.request.headers
        self.assertEqual(headers["set"][0], "1")
        self.assertEqual(headers["set"][1], "2")
        self.assertEqual(headers["set"], "1, 2")
        self.assertEqual(headers["host"][0], "example.com")
        self.assertEqual(headers["missing"], "")
        self.assertFalse("x" in headers["missing"])
        self.assertEqual(list(headers)[0], ("Host", "example.com"))
        self.assertEqual(headers.get_first("SET"), "1")
        headers["new"] = ["a", "b"]
        self.assertEqual(flow.modern.request.headers.get_all("new"), ["a", "b"])
        headers["one"] = "c"
        self.assertEqual(flow.modern.request.headers["one"], "c")


class OldMessages(unittest.TestCase):
    def test_query_form_and_attributes(self):
        flow = legacy.OldFlow(make_flow())
        q = flow.request.get_query()
        self.assertTrue(q)
        q["mitmproxy"] = ["rocks"]
        flow.request.set_query(q)
        self.assertEqual(flow.modern.request.path, "/p?a=1&b=2&mitmproxy=rocks")
        self.assertEqual(flow.response.code, 200)
        self.assertEqual(flow.response.msg, "OK")
        self.assertEqual(flow.request.httpversion, (1, 1))
        self.assertEqual(flow.request.pretty_host, "example.com")
        self.assertEqual(flow.request.pretty_host(hostheader=True), "example.com")

    def test_str_bodies(self):
        flow = legacy.OldFlow(make_flow())
        body = flow.response.content
        self.assertIsInstance(body, LegacyBytes)
        self.assertTrue("foo" in body)
        self.assertEqual(body.find("foo"), 2)
        flow.response.content = body.replace("foo", "bar")
        self.assertEqual(flow.modern.response.content, b"a bar b")
        flow.response.content = "caf\u00e9"
        self.assertEqual(flow.modern.response.content, "caf\u00e9".encode())

    def test_old_response_constructor_and_reply(self):
        from libmproxy.protocol.http import HTTPResponse
        from netlib.odict import ODictCaseless
        flow = legacy.OldFlow(make_flow())
        flow.modern.response = None
        flow.reply(HTTPResponse([1, 1], 200, "OK",
                                ODictCaseless([["Content-Type", "text/html"]]), "helloworld"))
        self.assertEqual(flow.modern.response.content, b"helloworld")
        self.assertEqual(flow.modern.response.headers["content-type"], "text/html")

    def test_match(self):
        flow = legacy.OldFlow(make_flow())
        from libmproxy import filt
        self.assertTrue(flow.match(filt.parse("~d example.com")))
        self.assertFalse(flow.match("~d other.org"))


class LiveConnection(unittest.TestCase):
    """`flow.live`: the upstream proxy a 0.11-0.15 script chose becomes `server_conn.via`."""

    def upstream_flow(self, scheme=b"http", client_id=None):
        from mitmproxy.proxy import mode_specs
        flow = make_flow()
        flow.live = True
        flow.client_conn.proxy_mode = mode_specs.ProxyMode.parse("upstream:http://10.0.0.1:3128")
        if client_id:
            flow.client_conn.id = client_id
        flow.request.scheme = scheme.decode()
        return flow

    def test_change_server_in_upstream_mode_sets_via_and_persists_per_client(self):
        context = legacy.ScriptContext.__new__(legacy.ScriptContext)
        context.upstream_by_client = __import__("collections").OrderedDict()
        modern = self.upstream_flow(client_id="c1")
        flow = legacy.OldFlow(modern, context)
        self.assertTrue(flow.live)
        self.assertTrue(flow.live.change_server(("localhost", 8082), persistent_change=True))
        self.assertEqual(modern.server_conn.via, ("http", ("localhost", 8082)))
        # The same proxy again is no new connection.
        self.assertFalse(flow.live.change_server(("localhost", 8082)))
        # A later flow of the same client connection goes there before its hook runs; one of
        # another connection does not.
        later = self.upstream_flow(client_id="c1")
        legacy.persistent_upstream(context, later)
        self.assertEqual(later.server_conn.via, ("http", ("localhost", 8082)))
        other = self.upstream_flow(client_id="c2")
        legacy.persistent_upstream(context, other)
        self.assertIsNone(other.server_conn.via)

    def test_an_open_server_connection_is_replaced_not_changed(self):
        modern = self.upstream_flow()
        modern.server_conn.state = connection.ConnectionState.OPEN
        opened = modern.server_conn
        legacy.OldFlow(modern).live.change_server(("localhost", 8082))
        self.assertIsNot(modern.server_conn, opened)
        self.assertEqual(modern.server_conn.address, ("example.com", 80))
        self.assertEqual(modern.server_conn.via, ("http", ("localhost", 8082)))

    def test_015_change_upstream_proxy_server_is_for_plain_http_only(self):
        modern = self.upstream_flow()
        legacy.OldFlow(modern).live.change_upstream_proxy_server(("localhost", 8081))
        self.assertEqual(modern.server_conn.via, ("http", ("localhost", 8081)))
        tunnelled = self.upstream_flow(b"https")
        legacy.OldFlow(tunnelled).live.change_upstream_proxy_server(("localhost", 8081))
        self.assertIsNone(tunnelled.server_conn.via)

    def test_outside_upstream_mode_nothing_changes(self):
        modern = make_flow()
        modern.live = True
        flow = legacy.OldFlow(modern)
        self.assertTrue(flow.live.change_server(("localhost", 8082), persistent_change=True))
        self.assertIsNone(modern.server_conn.via)
        modern.live = False
        self.assertIsNone(flow.live)

    def test_send_connect_request_and_establish_ssl_are_left_to_the_proxy(self):
        from libmproxy.protocol.http import send_connect_request
        flow = legacy.OldFlow(self.upstream_flow(b"https"))
        response = send_connect_request(flow.live.c.server_conn, "example.com", 443)
        self.assertEqual(response.status_code, 200)
        flow.live.c.establish_ssl(server=True)
        from netlib.tcp import Address
        self.assertEqual(Address.wrap(("h", 1)).port, 1)


class Streaming(unittest.TestCase):
    def test_generator_over_all_chunks(self):
        def modify(chunks):
            for chunk in chunks:
                yield chunk.replace("foo", "bar")
        pump = ChunkPump(modify)
        self.assertEqual(pump(b"a foo"), b"a bar")
        self.assertEqual(pump(b"foo!"), b"bar!")
        self.assertEqual(pump(b""), b"")

    def test_013_tuples(self):
        def modify(chunks):
            for prefix, content, suffix in chunks:
                yield prefix, content.replace("foo", "bar"), suffix
        pump = ChunkPump(modify)
        self.assertEqual(pump(b"foo"), b"bar")
        self.assertEqual(pump(b""), b"")


class Python2(unittest.TestCase):
    def test_print_statement_and_cstringio(self):
        source = 'import cStringIO\ns = cStringIO.StringIO()\ns.write("x")\nprint "out", 1\n'
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
            f.write(source)
        try:
            code = py2.compile_script(f.name)
            self.assertIsNotNone(code)
            namespace = {}
            py2.prepare_module(type(sys)("m"))
            exec(code, namespace)
            self.assertEqual(namespace["s"].getvalue(), b"x")
        finally:
            os.unlink(f.name)

    def test_python3_source_is_left_alone(self):
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
            f.write("print('x')\n")
        try:
            self.assertIsNone(py2.compile_script(f.name))
        finally:
            os.unlink(f.name)


class AppRegistry(unittest.TestCase):
    def test_wsgi_app_answers_its_virtual_host(self):
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"Hello from ", environ["PATH_INFO"].encode()]
        registry = legacy.AppRegistry()
        registry.add(app, "proxapp", 80)
        flow = make_flow(path="/x")
        flow.request.host = "proxapp"
        flow.request.headers["host"] = "proxapp"
        flow.response = None
        registry.serve(flow)
        self.assertEqual(flow.response.content, b"Hello from /x")
        other = make_flow()
        other.response = None
        registry.serve(other)
        self.assertIsNone(other.response)


class Finalise(unittest.TestCase):
    """In a child process that ends with os._exit, as the worker ends without the
    interpreter's own shutdown."""

    CHILD = """
import atexit, os, sys
sys.path.insert(0, {package!r})
from flowtap_host import finalise
left_open = open({path!r}, "w")
left_open.write("kept\\n")
atexit.register(lambda: open({path!r} + ".atexit", "w").close())
finalise.finalise()
os._exit(0)
"""

    def test_open_files_flushed_and_atexit_run_before_exit(self):
        import subprocess
        package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "out.txt")
            child = self.CHILD.format(package=package, path=path)
            subprocess.run([sys.executable, "-c", child], check=True, timeout=60)
            with open(path) as f:
                self.assertEqual(f.read(), "kept\n")
            self.assertTrue(os.path.exists(path + ".atexit"))


if __name__ == "__main__":
    unittest.main()
