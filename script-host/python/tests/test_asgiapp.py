"""`mitmproxy.addons.asgiapp`: a WSGI or ASGI app answers the requests for its host."""

import asyncio
import unittest

from mitmproxy.addons import asgiapp
from mitmproxy.test import tflow


def wsgi_app(environ, start_response):
    body = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}?{environ['QUERY_STRING']} " \
           f"{environ['wsgi.input'].read().decode()} {environ.get('HTTP_X_TEST', '-')}"
    start_response("201 Created", [("Content-Type", "text/plain"), ("X-App", "wsgi")])
    return [body.encode()]


async def asgi_app(scope, receive, send):
    event = await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": scope["path"].encode() + b" ",
                "more_body": True})
    await send({"type": "http.response.body", "body": event["body"]})


def live_flow(host="app.test", port=80, path="/p?q=1", content=b"data"):
    flow = tflow.tflow()
    flow.live = True
    flow.request.host, flow.request.port, flow.request.path = host, port, path
    flow.request.headers["x-test"] = "yes"
    flow.request.content = content
    return flow


class AsgiAppTest(unittest.TestCase):
    def test_wsgi_app_answers_its_host(self):
        addon = asgiapp.WSGIApp(wsgi_app, "app.test", 80)
        flow = live_flow()
        asyncio.run(addon.request(flow))
        self.assertEqual(flow.response.status_code, 201)
        self.assertEqual(flow.response.headers["x-app"], "wsgi")
        self.assertEqual(flow.response.content, b"GET /p?q=1 data yes")

    def test_other_hosts_ports_and_answered_flows_pass(self):
        addon = asgiapp.WSGIApp(wsgi_app, "app.test", 80)
        for flow in (live_flow(host="other.test"), live_flow(port=8080)):
            asyncio.run(addon.request(flow))
            self.assertIsNone(flow.response)
        answered = tflow.tflow(resp=True)
        answered.live = True
        answered.request.host = "app.test"
        before = answered.response.content
        asyncio.run(addon.request(answered))
        self.assertEqual(answered.response.content, before)
        not_live = live_flow()
        not_live.live = False
        asyncio.run(addon.request(not_live))
        self.assertIsNone(not_live.response)

    def test_asgi_app_with_any_port(self):
        addon = asgiapp.ASGIApp(asgi_app, "app.test", None)
        self.assertEqual(addon.name, "asgiapp:app.test:None")
        flow = live_flow(port=1234, path="/x")
        asyncio.run(addon.request(flow))
        self.assertEqual(flow.response.status_code, 200)
        self.assertEqual(flow.response.content, b"/x data")

    def test_a_failing_asgi_app_answers_500(self):
        async def broken(scope, receive, send):
            raise RuntimeError("boom")

        flow = live_flow()
        with self.assertLogs("mitmproxy.addons.asgiapp", "ERROR"):
            asyncio.run(asgiapp.ASGIApp(broken, "app.test", 80).request(flow))
        self.assertEqual(flow.response.status_code, 500)
        self.assertIn(b"boom", flow.response.content)


class FlowReprTest(unittest.TestCase):
    def test_http_flow_repr_is_mitmproxys(self):
        flow = tflow.tflow(resp=True)
        text = repr(flow)
        self.assertTrue(text.startswith("<HTTPFlow\r\n  request = Request(GET address:22/path)"))
        self.assertIn("\r\n  response = Response(200, unknown content type, 7b)", text)
        self.assertTrue(text.endswith(">"))
