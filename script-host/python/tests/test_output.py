"""The scripts' log lines as mitmdump prints them, and its start-up error check (`logs`)."""

import logging
import time
import unittest

from flowtap_host import logs
from mitmproxy.log import ALERT
from tests.support import Harness, http_state


def record(message, level=logging.INFO, created=None, **extra):
    r = logging.LogRecord("x", level, __file__, 1, message, None, None)
    if created is not None:
        r.created, r.msecs = created, (created % 1) * 1000
    r.__dict__.update(extra)
    return r


class FormatTest(unittest.TestCase):
    def test_time_to_the_millisecond_then_the_message(self):
        created = time.mktime((2026, 12, 3, 12, 34, 56, 0, 0, -1)) + 0.789
        self.assertEqual(logs.format_line(record("hello", created=created)),
                         "[12:34:56.789] hello")

    def test_client_and_colours_as_mitmdump(self):
        created = time.mktime((2026, 12, 3, 1, 2, 3, 0, 0, -1))
        line = logs.format_line(record("hi", created=created, client=("127.0.0.1", 5)))
        self.assertEqual(line, "[01:02:03.000][127.0.0.1:5] hi")
        warn = logs.format_line(record("careful", logging.WARNING, created=created), True)
        self.assertEqual(warn, "\033[36m\033[2m[01:02:03.000]\033[0m \033[33mcareful\033[0m")

    def test_verbosity_orders_alert_between_info_and_warn(self):
        order = [logs.VERBOSITY[n] for n in ("debug", "info", "alert", "warn", "error")]
        self.assertEqual(order, sorted(order))
        self.assertEqual(logs.VERBOSITY["alert"], ALERT)


class StartupTest(unittest.TestCase):
    def test_an_error_in_running_sends_a_second_ready_with_the_lines(self):
        h = Harness("""
            import logging
            def running():
                logging.error("logged in running")
            def request(flow):
                logging.error("an error later")
        """)
        try:
            self.assertEqual(h.startup_error, "")
            h.bridge.send("running", 1)
            _, report = h.bridge.readies.get(timeout=10)
            self.assertTrue(report.startswith("Error logged during startup:\n["), report)
            self.assertIn("] logged in running", report)
            h.roundtrip("request", http_state())
            self.assertIn("an error later", h.log_text())
            self.assertTrue(h.bridge.readies.empty())
        finally:
            h.close()

    def test_an_error_logged_at_import_is_a_startup_error(self):
        h = Harness("""
            import logging
            logging.error("at import")
        """)
        try:
            self.assertIn("] at import", h.startup_error)
            self.assertTrue(h.startup_error.startswith("Error logged during startup:"))
        finally:
            h.close()

    def test_a_load_exception_is_an_addon_error_and_an_import_one_an_error_in_script(self):
        h = Harness("def load(loader):\n    raise RuntimeError('in load')\n")
        try:
            self.assertIn("] Addon error: in load\nTraceback", h.startup_error)
        finally:
            h.close()
        h = Harness("raise RuntimeError('at import')\n")
        try:
            self.assertIn("] error in script " + h.paths[0] + "\nTraceback", h.startup_error)
            self.assertNotIn("importlib", h.startup_error)
        finally:
            h.close()

    def test_a_hook_exception_is_logged_once(self):
        h = Harness("def request(flow):\n    raise ValueError('boom once')\n")
        try:
            _, _, _, errors, _ = h.roundtrip("request", http_state())
            self.assertEqual(len(errors), 1)
            reports = [m for _, m, _ in h.bridge.logs if "boom once" in m]
            self.assertEqual(len(reports), 1, h.bridge.logs)
            self.assertTrue(reports[0].startswith("Addon error: boom once\nTraceback"))
            self.assertFalse(reports[0].endswith("\n"))
        finally:
            h.close()


if __name__ == "__main__":
    unittest.main()
