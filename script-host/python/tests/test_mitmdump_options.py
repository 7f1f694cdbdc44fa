"""Inside the worker, scripts see mitmdump's options and built-in addons (issue 11, item 2)."""

import unittest

from tests.support import Harness, http_state


class MitmdumpOptionsTest(unittest.TestCase):
    def test_options_and_proxyserver_as_scripts_read_them(self):
        h = Harness(
            """
            from mitmproxy import ctx

            def request(flow):
                servers = ctx.master.addons.get("proxyserver").servers
                flow.request.headers["x-seen"] = "|".join([
                    repr(ctx.options.dumper_filter),
                    str(ctx.options.flow_detail),
                    str(ctx.options.anticache),
                    ";".join(f"{s.mode.full_spec}={s.listen_addrs}" for s in servers),
                ])
            """,
            core_options={"mode": ["regular", "reverse:https://example.com@9090"],
                          "listen_host": "127.0.0.1", "listen_port": 8081, "flow_detail": 3},
            deferred={"anticache": "true"},
        )
        try:
            self.assertEqual(h.startup_error, "")
            _, _, state, _, _ = h.roundtrip("request", http_state())
            headers = dict((k.decode(), v.decode()) for k, v in state["request"]["headers"])
            self.assertEqual(
                headers["x-seen"],
                "None|3|True|regular=[('127.0.0.1', 8081)];"
                "reverse:https://example.com@9090=[('127.0.0.1', 9090)]")
            self.assertNotIn("Unknown options", h.log_text())
        finally:
            h.close()


if __name__ == "__main__":
    unittest.main()
