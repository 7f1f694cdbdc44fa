"""Test helpers: a bridge that plays the Rust worker's part, and flow states to feed the host."""

import os
import queue
import sys
import tempfile
import textwrap
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flowtap_host.runtime import Host  # noqa: E402
from mitmproxy import connection, http  # noqa: E402


_TUPLE_ROWS = {"messages"}
_FIELDS = {"headers", "trailers"}
_TUPLES = {"peername", "sockname", "address", "via"}


def listify(value, key=None):
    """What the Rust side hands over: lists, except where get_state() has tuples."""
    if isinstance(value, dict):
        return {k: listify(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if key in _TUPLES:
            return tuple(listify(v, "address" if key == "via" else None) for v in value)
        if key in _FIELDS:
            return tuple(tuple(v) for v in value)
        if key in _TUPLE_ROWS:
            return [tuple(listify(x) for x in v) if isinstance(v, (list, tuple)) else v for v in value]
        return [listify(v) for v in value]
    return value


def http_state(path="/", method="GET", host="example.com", response=None, **flow_attrs):
    client = connection.Client(peername=("127.0.0.1", 50000), sockname=("127.0.0.1", 8080))
    flow = http.HTTPFlow(client, connection.Server(address=(host, 80)), live=True)
    flow.request = http.Request(host, 80, method.encode(), b"http", b"", path.encode(),
                                b"HTTP/1.1", http.Headers([(b"Host", host.encode())]), b"",
                                None, time.time(), time.time())
    flow.response = response
    for k, v in flow_attrs.items():
        setattr(flow, k, v)
    state = listify(flow.get_state())
    state["live"] = True
    return state


class FakeBridge:
    """Implements the bridge interface the Rust worker gives `Host`."""

    def __init__(self):
        self._events = queue.Queue()
        self._taken = threading.Lock()
        self._next_seq = 0
        self._last_observed = None
        self.replies = queue.Queue()
        self.readies = queue.Queue()
        self.controls = queue.Queue()
        self.configure_results = queue.Queue()
        self.logs = []
        self.streams = []
        self.ignored_connections = []
        self.socks5_valid = []
        self.finished_event = threading.Event()
        self.stuck_messages = queue.Queue()

    # Called by the host.
    def wait_one(self):
        """Like the Rust worker's: events numbered in the order they were sent, each with the
        number of the last observed hook call (or Running) before it."""
        with self._taken:
            item = self._events.get()
            seq = self._next_seq
            self._next_seq += 1
            after = self._last_observed
            if (item[0] == "hook" and item[-1]) or item[0] == "running":
                self._last_observed = seq
            return (seq, after, item)

    def hook_reply(self, session, call_id, verdict, state, errors, timed_out, stream=0,
                   ignore_connection=False, socks5_valid=None):
        self.replies.put((call_id, verdict, state, list(errors), timed_out))
        self.streams.append(stream)
        self.ignored_connections.append(ignore_connection)
        self.socks5_valid.append(socks5_valid)

    def chunk_reply(self, session, call_id, is_response, data):
        self.replies.put((call_id, is_response, data))

    def ready(self, session, infos, startup_error):
        self.readies.put((infos, startup_error))

    def control(self, session, control_id, kind, *payload):
        self.controls.put((kind,) + payload)

    def configure_result(self, session, error):
        self.configure_results.put(error)

    def log(self, level, message, script):
        self.logs.append((level, message, script))

    def oplog(self, level, message):
        self.logs.append((level, message, "flowtap.worker"))

    def finished(self):
        self.finished_event.set()

    def heartbeat(self, limit):
        self.heartbeat_limit = limit

    def stuck(self, message):
        self.stuck_messages.put(message)

    # Called by tests.
    def send(self, *item):
        self._events.put(item)


class Harness:
    """A `Host` running real script files on its own thread."""

    def __init__(self, *sources_or_specs, specs=None, deferred=None, core_options=None):
        self.dir = tempfile.TemporaryDirectory()
        self.paths = []
        for i, src in enumerate(sources_or_specs):
            path = os.path.join(self.dir.name, f"script{i}.py")
            with open(path, "w") as f:
                f.write(textwrap.dedent(src))
            self.paths.append(path)
        self.bridge = FakeBridge()
        self.host = Host(self.bridge, specs or self.paths)
        self.thread = threading.Thread(target=self.host.run, daemon=True)
        self.thread.start()
        self.bridge.send("hello", 1, core_options or {}, deferred or {})
        self.infos, self.startup_error = self.bridge.readies.get(timeout=10)
        self._ids = iter(range(1, 1_000_000))

    def call(self, hook, state, deadline_ms=0, observe_only=False):
        call_id = next(self._ids)
        self.bridge.send("hook", 1, call_id, hook, state, deadline_ms, observe_only)
        return call_id

    def reply(self, timeout=10):
        return self.bridge.replies.get(timeout=timeout)

    def roundtrip(self, hook, state, **kw):
        call_id = self.call(hook, state, **kw)
        reply = self.reply()
        assert reply[0] == call_id, (reply, call_id)
        return reply

    def close(self):
        self.bridge.send("done", 1)
        self.bridge.finished_event.wait(10)
        self.thread.join(10)
        self.dir.cleanup()

    def log_text(self):
        return "\n".join(m for _, m, _ in self.bridge.logs)
