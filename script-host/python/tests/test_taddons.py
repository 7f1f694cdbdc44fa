"""An addon tested the way mitmproxy's documentation teaches: `taddons.context` and `tflow`."""

import asyncio
import time
import typing
import unittest

from tests.support import http_state  # noqa: F401  (sets sys.path)
from mitmproxy import command, ctx, eventsequence, exceptions, flow, hooks
from mitmproxy.proxy import layers
from mitmproxy.script import concurrent
from mitmproxy.test import taddons, tflow, tutils


class Tagger:
    """Tags requests to matching hosts; `tagger.count` reports how many it tagged."""

    def __init__(self):
        self.tagged = 0
        self.configured = []

    def load(self, loader):
        loader.add_option("tag_host", typing.Optional[str], None, "Host to tag.")
        loader.add_option("tag_limit", int, 10, "Tag at most this many requests.")

    def configure(self, updated):
        self.configured.append(set(updated))
        if "tag_limit" in updated and ctx.options.tag_limit < 0:
            raise exceptions.OptionsError("tag_limit must not be negative")

    def request(self, f):
        if f.request.host == ctx.options.tag_host and self.tagged < ctx.options.tag_limit:
            f.request.headers["x-tagged"] = "1"
            self.tagged += 1

    @command.command("tagger.count")
    def count(self) -> int:
        return self.tagged

    @command.command("tagger.tag")
    def tag(self, flows: typing.Sequence[flow.Flow], value: str) -> None:
        for f in flows:
            f.comment = value


class Slow:
    @concurrent
    def request(self, f):
        time.sleep(0.2)


class TaddonsTest(unittest.TestCase):
    def test_options_configure_and_hooks(self):
        tagger = Tagger()
        with taddons.context(tagger) as tctx:
            tctx.configure(tagger, tag_host="address")
            self.assertIn({"tag_host"}, tagger.configured)
            f = tflow.tflow()
            tagger.request(f)
            self.assertEqual(f.request.headers["x-tagged"], "1")
            other = tflow.tflow(req=tutils.treq(host="elsewhere.example"))
            tagger.request(other)
            self.assertNotIn("x-tagged", other.request.headers)

    def test_rejected_option_is_rolled_back(self):
        tagger = Tagger()
        with taddons.context(tagger) as tctx:
            with self.assertRaises(exceptions.OptionsError):
                tctx.configure(tagger, tag_limit=-1)
            self.assertEqual(tctx.options.tag_limit, 10)

    def test_commands_with_typed_arguments(self):
        tagger = Tagger()
        with taddons.context(tagger) as tctx:
            tagger.tagged = 3
            self.assertEqual(tctx.master.commands.execute("tagger.count"), 3)
            f = tflow.tflow()
            tctx.master.commands.call("tagger.tag", [f], "seen")
            self.assertEqual(f.comment, "seen")
            with self.assertRaises(exceptions.CommandError):
                tctx.master.commands.execute("tagger.nonexistent")
            self.assertEqual(tctx.command(tagger.count), 3)

    def test_cycle_runs_the_flow_events_in_order(self):
        seen = []

        class Recorder:
            def __getattr__(self, name):
                if name in hooks.all_hooks:
                    return lambda *args: seen.append(name)
                raise AttributeError(name)

        with taddons.context() as tctx:
            asyncio.run(tctx.cycle(Recorder(), tflow.tflow(resp=True)))
        self.assertEqual(seen, ["requestheaders", "request", "responseheaders", "response"])

    def test_concurrent_hooks_overlap(self):
        slow = Slow()
        with taddons.context(slow) as tctx:
            async def both():
                await asyncio.gather(tctx.cycle(slow, tflow.tflow()),
                                     tctx.cycle(slow, tflow.tflow()))

            start = time.monotonic()
            asyncio.run(both())
            self.assertLess(time.monotonic() - start, 0.39)

    def test_mitmdump_options_and_builtin_addons(self):
        with taddons.context() as tctx:
            self.assertEqual(tctx.options.listen_port, None)
            self.assertEqual(tctx.options.flow_detail, 1)
            self.assertEqual(tctx.options.mode, ["regular"])
            self.assertIsNotNone(tctx.master.addons.get("core"))

    def test_eventsequence_for_every_flow_type(self):
        names = lambda f: [type(e).__name__ for e in eventsequence.iterate(f)]  # noqa: E731
        self.assertEqual(names(tflow.ttcpflow(err=True)),
                         ["TcpStartHook", "TcpMessageHook", "TcpMessageHook", "TcpErrorHook"])
        self.assertEqual(names(tflow.tudpflow()),
                         ["UdpStartHook", "UdpMessageHook", "UdpMessageHook", "UdpEndHook"])
        self.assertEqual(names(tflow.tdnsflow(resp=True)), ["DnsRequestHook", "DnsResponseHook"])
        self.assertIsInstance(next(eventsequence.iterate(tflow.twebsocketflow())),
                              layers.http.HttpRequestHeadersHook)
        self.assertEqual(layers.http.HttpRequestHook(None).name, "request")

    def test_tflows_have_mitmproxys_values(self):
        f = tflow.tflow(resp=True, err=True)
        self.assertEqual(f.request.url, "http://address:22/path")
        self.assertEqual(f.response.content, b"message")
        self.assertEqual(f.error.msg, "error")
        self.assertEqual(f.client_conn.proxy_mode.type_name, "regular")
        self.assertEqual(f.get_state()["client_conn"]["proxy_mode"], "regular")
        self.assertEqual([type(x).__name__ for x in tflow.tflows()].count("DNSFlow"), 3)


if __name__ == "__main__":
    unittest.main()
