"""The runtime end to end in Python: real script files, the real Host, a bridge fake."""

import os
import time
import unittest

from tests.support import Harness, http_state, listify
from mitmproxy import connection, dns, http

CONTINUE, RESPOND, KILL, INTERCEPT = 1, 2, 3, 4


def headers_of(state, part="request"):
    return {bytes(k).decode().lower(): bytes(v).decode() for k, v in state[part]["headers"]}


class ChainTest(unittest.TestCase):
    def test_chain_in_load_order_with_sub_addons(self):
        h = Harness(
            """
            class Sub:
                def request(self, flow):
                    flow.request.headers["x-order"] += ",sub"
            def request(flow):
                flow.request.headers["x-order"] = "a"
            addons = [Sub()]
            """,
            """
            def request(flow):
                flow.request.headers["x-order"] += ",b"
            """,
        )
        try:
            self.assertEqual(h.startup_error, "")
            _, verdict, state, errors, timed_out = h.roundtrip("request", http_state())
            self.assertEqual((verdict, errors, timed_out), (CONTINUE, [], False))
            self.assertEqual(headers_of(state)["x-order"], "a,sub,b")
        finally:
            h.close()

    def test_unchanged_flow_sends_no_state_and_hooks_are_declared(self):
        h = Harness("def request(flow): pass\ndef client_disconnected(c): pass\n")
        try:
            _, verdict, state, _, _ = h.roundtrip("request", http_state())
            self.assertEqual((verdict, state), (CONTINUE, None))
            path, hooks, _ = h.infos[0]
            self.assertEqual(sorted(hooks), [("client_disconnected", False, False),
                                             ("request", True, True)])
        finally:
            h.close()

    def test_respond_kill_intercept_verdicts(self):
        h = Harness(
            """
            from mitmproxy import http
            def request(flow):
                if flow.request.path == "/reply":
                    flow.response = http.Response.make(418, b"teapot", {"Content-Type": "text/plain"})
                if flow.request.path == "/kill":
                    flow.kill()
                if flow.request.path == "/hold":
                    flow.intercept()
            """
        )
        try:
            _, verdict, state, _, _ = h.roundtrip("request", http_state("/reply"))
            self.assertEqual(verdict, RESPOND)
            self.assertEqual(state["response"]["status_code"], 418)
            self.assertEqual(state["response"]["content"], b"teapot")
            _, verdict, state, _, _ = h.roundtrip("request", http_state("/kill"))
            self.assertEqual(verdict, KILL)
            self.assertEqual(state["error"]["msg"], "Connection killed.")
            _, verdict, state, _, _ = h.roundtrip("request", http_state("/hold"))
            self.assertEqual(verdict, INTERCEPT)
        finally:
            h.close()

    def test_dns_response_set_in_dns_request_is_sent(self):
        h = Harness(
            """
            from mitmproxy import dns
            def dns_request(flow):
                flow.response = flow.request.succeed([dns.ResourceRecord.A("example.com", "10.0.0.1")])
            """
        )
        try:
            flow = dns.DNSFlow(connection.Client(peername=("127.0.0.1", 5353)),
                               connection.Server(address=("1.1.1.1", 53)), live=True)
            flow.request = dns.DNSMessage(id=7, query=True,
                                          questions=[dns.Question("example.com", 1, 1)])
            state = listify(flow.get_state())
            state["live"] = True
            _, verdict, state, errors, _ = h.roundtrip("dns_request", state)
            self.assertEqual((verdict, errors), (RESPOND, []))
            self.assertEqual(state["response"]["answers"][0]["data"], bytes([10, 0, 0, 1]))
        finally:
            h.close()

    def test_exception_gives_traceback_and_unmodified_flow(self):
        h = Harness(
            """
            def request(flow):
                flow.request.headers["x-partial"] = "1"
                raise ValueError("boom in script")
            """,
            """
            def request(flow):
                flow.request.headers["x-second"] = "ran"
            """,
        )
        try:
            _, verdict, state, errors, _ = h.roundtrip("request", http_state())
            self.assertEqual(verdict, CONTINUE)
            self.assertEqual(len(errors), 1)
            script, hook, tb = errors[0]
            self.assertEqual((script, hook), (h.paths[0], "request"))
            self.assertIn("ValueError: boom in script", tb)
            self.assertIn("script0.py", tb)
            # Our documented choice: a later script still runs.
            self.assertEqual(headers_of(state)["x-second"], "ran")
            self.assertIn("boom in script", h.log_text())
        finally:
            h.close()

    def test_syntax_error_is_a_startup_error(self):
        h = Harness("def request(flow)\n    pass\n")
        try:
            self.assertIn("SyntaxError", h.startup_error)
            self.assertIn("script0.py", h.startup_error)
        finally:
            h.close()


class LaterActionTest(unittest.TestCase):
    def test_intercept_then_resume_from_a_later_task(self):
        h = Harness(
            """
            import threading
            def request(flow):
                flow.intercept()
                threading.Timer(0.2, flow.resume).start()
            """
        )
        try:
            state = http_state()
            _, verdict, _, _, _ = h.roundtrip("request", state)
            self.assertEqual(verdict, INTERCEPT)
            self.assertEqual(h.bridge.controls.get(timeout=5), ("resume", state["id"]))
        finally:
            h.close()

    def test_commands_become_controls(self):
        h = Harness(
            """
            from mitmproxy import ctx
            def response(flow):
                ctx.master.commands.call("replay.client", [flow.copy()])
                ctx.master.commands.call("inject.websocket", flow, True, b"hi", False)
                ctx.master.shutdown()
            """
        )
        try:
            state = http_state(response=http.Response.make(200, b"ok"))
            h.roundtrip("response", state)
            kind, replayed = h.bridge.controls.get(timeout=5)
            self.assertEqual(kind, "replay")
            self.assertNotEqual(replayed["id"], state["id"])
            self.assertEqual(h.bridge.controls.get(timeout=5), ("inject_websocket", state["id"], True, b"hi", False))
            self.assertEqual(h.bridge.controls.get(timeout=5), ("shutdown",))
        finally:
            h.close()


class ConcurrencyTest(unittest.TestCase):
    SLEEPY = "import time\ndef request(flow):\n    time.sleep(0.5)\n    flow.request.headers['x-slept'] = '1'\n"

    def _run(self, n, **kw):
        h = Harness(self.SLEEPY, **kw)
        try:
            start = time.monotonic()
            ids = {h.call("request", http_state(f"/{i}")) for i in range(n)}
            got = set()
            for _ in range(n):
                call_id, verdict, state, _, _ = h.reply(timeout=30)
                self.assertEqual(headers_of(state)["x-slept"], "1")
                got.add(call_id)
            self.assertEqual(got, ids)
            return time.monotonic() - start
        finally:
            h.close()

    def test_sync_hooks_of_different_flows_run_concurrently(self):
        self.assertLess(self._run(20), 5.0)

    def test_script_serial_runs_one_hook_at_a_time(self):
        self.assertGreaterEqual(self._run(6, deferred={"script_serial": "true"}), 3.0)

    def test_per_flow_order_is_kept(self):
        h = Harness(
            """
            import time
            seen = []
            def requestheaders(flow):
                time.sleep(0.3)
                seen.append("requestheaders")
            def request(flow):
                seen.append("request")
                flow.request.headers["x-seen"] = ",".join(seen)
            """
        )
        try:
            state = http_state()
            h.call("requestheaders", dict(state), observe_only=True)
            _, _, out, _, _ = h.roundtrip("request", dict(state))
            self.assertEqual(headers_of(out)["x-seen"], "requestheaders,request")
        finally:
            h.close()

    ORDER = """
        import time
        seen = []
        def server_connected(data):
            time.sleep(0.3)
            seen.append("server_connected")
        def http_connected(flow):
            time.sleep(0.3)
            seen.append("http_connected " + flow.request.path)
        def request(flow):
            flow.request.headers["x-seen"] = ",".join(seen)
        """

    def _connection_and_flows(self, *paths):
        """A connection subject and flows of that same client connection."""
        flows = [http_state(path) for path in paths]
        client = flows[0]["client_conn"]
        for flow in flows[1:]:
            flow["client_conn"] = client
        conn = {"id": client["id"], "client_conn": client, "server_conn": flows[0]["server_conn"]}
        return conn, flows

    def test_connection_and_latest_flow_hooks_keep_the_proxys_order(self):
        h = Harness(self.ORDER)
        try:
            conn, (flow,) = self._connection_and_flows("/a")
            # Observed calls sent back to back in both orders, then an awaited one that reads
            # what ran before it.
            h.call("server_connected", conn, observe_only=True)
            h.call("http_connected", dict(flow), observe_only=True)
            h.call("server_connected", conn, observe_only=True)
            _, _, out, _, _ = h.roundtrip("request", dict(flow))
            self.assertEqual(headers_of(out)["x-seen"],
                             "server_connected,http_connected /a,server_connected")
            self.assertTrue(h.host._order.idle())
        finally:
            h.close()

    def test_a_later_flow_waits_for_observed_calls_only(self):
        h = Harness(self.ORDER + """
        def requestheaders(flow):
            if flow.request.path == "/slow":
                time.sleep(0.6)
        """)
        try:
            conn, (earlier, later) = self._connection_and_flows("/slow", "/later")
            # HTTP/2: the proxy sends the later flow's calls without waiting for the earlier
            # flow's awaited one, so they run meanwhile; they do wait for an observed call of
            # the connection sent before them.
            slow = h.call("requestheaders", dict(earlier))
            h.call("server_connected", conn, observe_only=True)
            _, _, out, _, _ = h.roundtrip("request", dict(later))
            self.assertEqual(headers_of(out)["x-seen"], "server_connected")
            self.assertEqual(h.reply()[0], slow)
        finally:
            h.close()

    def test_async_hooks_run_on_the_loop_concurrently(self):
        h = Harness(
            """
            import asyncio
            async def request(flow):
                await asyncio.sleep(0.5)
                flow.request.headers["x-async"] = "1"
            """
        )
        try:
            start = time.monotonic()
            for i in range(10):
                h.call("request", http_state(f"/{i}"))
            for _ in range(10):
                _, _, state, _, _ = h.reply()
                self.assertEqual(headers_of(state)["x-async"], "1")
            self.assertLess(time.monotonic() - start, 3.0)
        finally:
            h.close()

    def test_deadline_gives_timed_out_reply(self):
        h = Harness("import time\ndef request(flow):\n    time.sleep(1)\n")
        try:
            _, verdict, state, _, timed_out = h.roundtrip("request", http_state(), deadline_ms=100)
            self.assertTrue(timed_out)
            self.assertIsNone(state)
        finally:
            h.close()


class WatchdogTest(unittest.TestCase):
    SCRIPT = """
        import threading
        def request(flow):
            if flow.request.path == "/forever":
                threading.Event().wait()
    """

    def test_a_hook_stuck_past_the_bound_stops_the_worker_naming_it(self):
        h = Harness(self.SCRIPT, core_options={"hook_stuck_timeout": 0.3})
        try:
            forever = http_state()
            forever["request"]["path"] = b"/forever"
            started = time.monotonic()
            call_id = h.call("request", forever, deadline_ms=100)
            reply = h.reply()
            self.assertEqual((reply[0], reply[4]), (call_id, True))
            message = h.bridge.stuck_messages.get(timeout=5)
            self.assertGreaterEqual(time.monotonic() - started, 0.3)
            self.assertIn("hook request", message)
            self.assertIn("hook_stuck_timeout=0.3s", message)
            # Where the hook is: the script's line that waits.
            self.assertIn("threading.Event().wait()", message)
        finally:
            h.bridge.send("done", 1)

    def test_a_late_hook_that_returns_within_the_bound_stops_nothing(self):
        h = Harness("import time\ndef request(flow):\n    time.sleep(0.3)\n",
                    core_options={"hook_stuck_timeout": 2})
        try:
            _, _, _, _, timed_out = h.roundtrip("request", http_state(), deadline_ms=100)
            self.assertTrue(timed_out)
            # The hook returns at 0.3 s; its worker keeps answering.
            _, _, _, _, timed_out = h.roundtrip("request", http_state(), deadline_ms=2000)
            self.assertFalse(timed_out)
            self.assertTrue(h.bridge.stuck_messages.empty())
        finally:
            h.close()


class OptionsTest(unittest.TestCase):
    SCRIPT = """
        from typing import Optional, Sequence
        from mitmproxy import ctx, exceptions
        def load(loader):
            loader.add_option("greeting", str, "hello", "The greeting.")
            loader.add_option("limit", Optional[int], None, "A limit.")
            loader.add_option("names", Sequence[str], [], "Names.")
        def configure(updated):
            if "limit" in updated and ctx.options.limit is not None and ctx.options.limit < 0:
                raise exceptions.OptionsError("limit must be >= 0")
        def request(flow):
            flow.request.headers["x-greeting"] = ctx.options.greeting
            flow.request.headers["x-names"] = "|".join(ctx.options.names)
        """

    def test_deferred_set_and_configure_validation(self):
        h = Harness(self.SCRIPT, deferred={"greeting": "hi there", "names": "a\nb"})
        try:
            self.assertEqual(h.startup_error, "")
            _, _, state, _, _ = h.roundtrip("request", http_state())
            self.assertEqual(headers_of(state)["x-greeting"], "hi there")
            self.assertEqual(headers_of(state)["x-names"], "a|b")
            options = {o[0]: o for o in h.infos[0][2]}
            self.assertEqual(options["limit"][1], "optional int")
            h.bridge.send("configure", 1, {"limit": -1})
            self.assertIn("limit must be >= 0", h.bridge.configure_results.get(timeout=5))
            h.bridge.send("configure", 1, {"limit": 5})
            self.assertEqual(h.bridge.configure_results.get(timeout=5), "")
        finally:
            h.close()

    def test_invalid_option_at_startup_is_fatal(self):
        h = Harness(self.SCRIPT, deferred={"limit": "-3"})
        try:
            self.assertIn("limit must be >= 0", h.startup_error)
        finally:
            h.close()


class OldApiTest(unittest.TestCase):
    def test_start_context_argv_and_response_context_flow(self):
        import tempfile, textwrap
        d = tempfile.mkdtemp()
        path = os.path.join(d, "old.py")
        with open(path, "w") as f:
            f.write(textwrap.dedent(
                """
                def start(context, argv):
                    if len(argv) != 3:
                        raise ValueError('Usage: -s "old.py old new"')
                    context.old, context.new = argv[1], argv[2]
                def response(context, flow):
                    flow.response.content = flow.response.content.replace(context.old.encode(), context.new.encode())
                    flow.response.headers["newheader"] = ["foo"]
                def clientconnect(context, root_layer):
                    context.log("client from %s" % (root_layer.client_conn.address,))
                """
            ))
        h = Harness(specs=[f"{path} bananas apples"])
        try:
            self.assertEqual(h.startup_error, "")
            state = http_state(response=http.Response.make(200, b"I like bananas"))
            _, _, out, _, _ = h.roundtrip("response", state)
            self.assertEqual(out["response"]["content"], b"I like apples")
            self.assertEqual(headers_of(out, "response")["newheader"], "foo")
            hooks = [x[0] for x in h.infos[0][1]]
            self.assertIn("client_connected", hooks)
            conn = {"id": "c1", "client_conn": state["client_conn"], "server_conn": None}
            h.roundtrip("client_connected", conn)
            self.assertIn("client from ('127.0.0.1', 50000)", h.log_text())
        finally:
            h.close()

    def test_one_x_era_start_returns_addon_and_configure_two_args(self):
        h = Harness(
            """
            class Addon:
                def configure(self, options, updated):
                    self.configured = "script_serial" in updated
                def request(self, flow):
                    flow.request.headers["x-configured"] = str(self.configured)
            def start():
                return Addon()
            """
        )
        try:
            _, _, out, _, _ = h.roundtrip("request", http_state())
            self.assertEqual(headers_of(out)["x-configured"], "True")
        finally:
            h.close()

    def test_old_tcp_message_with_context(self):
        h = Harness(
            """
            def tcp_message(context, tcp_msg):
                tcp_msg.message = tcp_msg.message.replace(b"foo", b"bar")
            """
        )
        try:
            from mitmproxy import connection, tcp
            from tests.support import listify
            f = tcp.TCPFlow(connection.Client(), connection.Server(), live=True)
            f.messages.append(tcp.TCPMessage(True, b"foo!"))
            _, _, out, _, _ = h.roundtrip("tcp_message", listify(f.get_state()))
            self.assertEqual(out["messages"][0][1], b"bar!")
        finally:
            h.close()


class FlowLifetimeTest(unittest.TestCase):
    """The worker keeps a flow object only while a later hook may still come for it."""

    def test_a_flow_is_dropped_after_the_last_hook_a_script_implements(self):
        h = Harness("def request(flow):\n    flow.request.headers['x'] = '1'\n")
        try:
            for n in range(5):
                h.roundtrip("request", http_state(f"/{n}"))
            self.assertEqual(h.host.flows, {})
        finally:
            h.close()

    def test_a_flow_is_kept_until_its_response_hook(self):
        h = Harness("seen = []\ndef request(flow): seen.append(flow)\n"
                    "def response(flow): assert flow is seen[-1]\n")
        try:
            state = http_state("/kept")
            h.roundtrip("request", state)
            self.assertEqual(list(h.host.flows), [state["id"]])
            state["response"] = http_state(response=http.Response.make(200))["response"]
            _, _, _, errors, _ = h.roundtrip("response", state)
            self.assertEqual(errors, [])
            self.assertEqual(h.host.flows, {})
        finally:
            h.close()


    def test_a_websocket_flow_is_kept_between_messages_until_its_end(self):
        from mitmproxy import websocket
        h = Harness("seen = []\ndef websocket_message(flow):\n"
                    "    assert not seen or flow is seen[-1]\n    seen.append(flow)\n")
        try:
            state = http_state("/ws", response=http.Response.make(101),
                               websocket=websocket.WebSocketData())
            for _ in range(2):
                _, _, _, errors, _ = h.roundtrip("websocket_message", state)
                self.assertEqual(errors, [])
                self.assertEqual(list(h.host.flows), [state["id"]])
            h.call("websocket_end", state, observe_only=True)
            deadline = time.monotonic() + 5
            while h.host.flows and time.monotonic() < deadline:
                time.sleep(0.01)
            self.assertEqual(h.host.flows, {})
        finally:
            h.close()


class TasksFromSyncHooksTest(unittest.TestCase):
    def test_asyncio_create_task_in_a_sync_hook_runs_on_the_loop(self):
        h = Harness("""
            import asyncio, logging

            async def later(path):
                await asyncio.sleep(0)
                logging.info("task ran for %s", path)

            def request(flow):
                asyncio.create_task(later(flow.request.path))
                asyncio.get_running_loop().call_soon(logging.info, "callback ran")
            """)
        try:
            h.roundtrip("request", http_state("/tasked"))
            deadline = time.monotonic() + 5
            while not ("callback ran" in h.log_text() and "task ran" in h.log_text()) \
                    and time.monotonic() < deadline:
                time.sleep(0.01)
            self.assertIn("task ran for /tasked", h.log_text())
            self.assertIn("callback ran", h.log_text())
        finally:
            h.close()


class StreamTest(unittest.TestCase):
    def test_a_stream_callable_gets_each_chunk_then_an_empty_one(self):
        h = Harness("""
            def responseheaders(flow):
                flow.response.stream = lambda chunk: chunk.upper() if chunk else b"!"
            """)
        try:
            state = http_state("/s", response=http.Response.make(200))
            h.roundtrip("responseheaders", state)
            self.assertEqual(h.bridge.streams[-1], 2)
            self.assertEqual(list(h.host.flows), [state["id"]])
            chunk = {"id": state["id"], "response": dict(state["response"], content=b"abc")}
            h.call("stream_chunk", chunk)
            self.assertEqual(h.reply()[1:], (True, b"ABC"))
            h.call("stream_chunk", {"id": state["id"],
                                    "response": dict(state["response"], content=b"")})
            self.assertEqual(h.reply()[1:], (True, b"!"))
            self.assertEqual(h.host.flows, {}, "no later hook: the flow is let go")
        finally:
            h.close()


class ReloadTest(unittest.TestCase):
    def test_edited_script_is_reloaded(self):
        h = Harness("def request(flow):\n    flow.request.headers['x-v'] = '1'\n")
        try:
            _, _, out, _, _ = h.roundtrip("request", http_state())
            self.assertEqual(headers_of(out)["x-v"], "1")
            with open(h.paths[0], "w") as f:
                f.write("def request(flow):\n    flow.request.headers['x-v'] = '2'\n")
            os.utime(h.paths[0], (time.time() + 5, time.time() + 5))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                _, _, out, _, _ = h.roundtrip("request", http_state())
                if headers_of(out)["x-v"] == "2":
                    break
                time.sleep(0.2)
            self.assertEqual(headers_of(out)["x-v"], "2")
        finally:
            h.close()


if __name__ == "__main__":
    unittest.main()


class ReloadFailureTest(unittest.TestCase):
    def test_broken_edit_unloads_the_script_and_logs_the_error(self):
        h = Harness("def request(flow):\n    flow.request.headers['x-v'] = '1'\n")
        try:
            with open(h.paths[0], "w") as f:
                f.write("def request(flow)\n    pass\n")
            os.utime(h.paths[0], (time.time() + 5, time.time() + 5))
            deadline = time.monotonic() + 10
            while "SyntaxError" not in h.log_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            self.assertIn("SyntaxError", h.log_text())
            _, _, out, errors, _ = h.roundtrip("request", http_state())
            self.assertIsNone(out)  # the script stays unloaded: the flow goes on untouched
            self.assertEqual(errors, [])
        finally:
            h.close()


class OldHooksTest(unittest.TestCase):
    def test_tick_log_and_websocket_handshake(self):
        h = Harness(
            """
            import logging
            ticks = []
            entries = []
            def tick():
                ticks.append(1)
            def log(entry):
                entries.append((entry.level, entry.msg))
            def websocket_handshake(flow):
                flow.request.headers["x-ws"] = "handshake"
            def request(flow):
                logging.warning("seen %s", flow.request.path)
                flow.request.headers["x-ticks"] = str(len(ticks))
                flow.request.headers["x-logs"] = repr(entries)
            """
        )
        try:
            time.sleep(0.5)
            state = http_state("/first")
            _, _, out, _, _ = h.roundtrip("request", state)
            self.assertGreater(int(headers_of(out)["x-ticks"]), 0)
            self.assertNotIn("x-ws", headers_of(out))
            time.sleep(0.2)
            ws = http_state("/ws")
            ws["request"]["headers"] += ((b"Upgrade", b"websocket"),)
            _, _, out, _, _ = h.roundtrip("request", ws)
            self.assertEqual(headers_of(out)["x-ws"], "handshake")
            self.assertIn("seen /first", headers_of(out)["x-logs"])
        finally:
            h.close()
