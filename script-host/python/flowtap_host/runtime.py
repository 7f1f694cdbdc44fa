"""`Host`: runs the scripts' hooks for the proxy, concurrently across flows, in order per flow.

Threads and the loop:

- `script_threads` dispatcher threads wait in `bridge.wait_one()` (without the GIL) for the
  proxy's events; while one waits it may drive the worker's sockets, so a lone call runs on the
  thread that read it (the Rust worker's inbox says how). A dispatcher runs a hook call whose
  handlers are all sync right away, in its own thread, so a sleeping hook pauses only its own
  flow.
  With `script_serial=true` one sync hook runs at a time, as in mitmproxy.
- One asyncio loop on the thread that called `Host.run()` (the Rust worker's Python thread) runs
  `async def` hooks and everything else (Hello, Running, Configure, Done, reloads, ticks).
  Sync handlers inside an async chain go to a `ThreadPoolExecutor`.
- Which call may start when is decided in one place, `order.Order` (its docstring has the
  rules): per flow (or connection) one call at a time in arrival order; a connection's observed
  calls before its later calls; awaited calls of different flows concurrently. A dispatcher
  runs the first call it lets go in its own thread; others go to the executor.
- A call past its deadline is answered `timed_out`; its late changes are dropped. A call stuck
  long after that stops the worker so that it is replaced (`watchdog.Watchdog`).

Replies go back through `bridge.hook_reply(...)` from whichever thread finished the chain.
"""

import asyncio
import collections
import concurrent.futures
import contextvars
import itertools
import logging
import threading
import time

from mitmproxy import ctx, exceptions, hooks
from mitmproxy import options as mitmdump_options
from mitmproxy.connection import Client, Server
from mitmproxy.flow import Error, Flow, raw_state
from mitmproxy.log import LogEntry
from mitmproxy.utils import human

from . import finalise, logs, master, order, scripts, watchdog

log = logging.getLogger("flowtap.host")
# The worker's own operational log (stderr, with the process's other log lines; see `logs`).
oplog = logging.getLogger(logs.OPERATIONAL)

CONTINUE, RESPOND, KILL, INTERCEPT = 1, 2, 3, 4

# The TLS hooks the proxy fires (not mitmproxy's `next_layer` and QUIC ones): their subject is a
# connection hook's, given to scripts as `tls.ClientHelloData` or `tls.TlsData`. `socks5_auth`'s
# subject is a connection hook's too, given as `Socks5AuthData`.
TLS_HOOKS = frozenset({"tls_clienthello", "tls_start_client", "tls_start_server",
                       "tls_established_client", "tls_established_server", "tls_failed_client",
                       "tls_failed_server"})
CONNECTION_HOOKS = frozenset(hooks.CONNECTION) | TLS_HOOKS | {"socks5_auth"}
FLOW_HOOKS = frozenset(hooks.HTTP + hooks.WEBSOCKET + hooks.TCP + hooks.UDP + hooks.DNS)
# Hooks after which the proxy is done with the flow (unless a script intercepted it).
FINAL_HOOKS = frozenset({"error", "websocket_end", "tcp_end", "tcp_error", "udp_end", "udp_error",
                         "dns_response", "dns_error", "http_connect_error",
                         "http_connect_upstream"})
NEEDS_BODY = frozenset({"request", "response", "websocket_message", "tcp_message", "udp_message"})
OBSERVE_ONLY = frozenset({"client_disconnected", "server_connected", "server_disconnected",
                          "server_connect_error", "http_connected", "http_connect_error",
                          "websocket_start", "websocket_end", "tcp_start", "tcp_end", "tcp_error",
                          "udp_start", "udp_end", "udp_error", "dns_error",
                          # flowtap's TLS settings are not scripts' to change (no ssl_conn).
                          "tls_start_client", "tls_start_server", "tls_established_client",
                          "tls_established_server", "tls_failed_client", "tls_failed_server"})
RESPOND_HOOKS = frozenset({"requestheaders", "request", "http_connect", "dns_request"})
# Each flow type's hooks in the order they fire. The worker keeps a flow object (so that a script
# sees the same object in each hook) only while a later hook may still come for it.
LIFECYCLE = {
    "http": ("requestheaders", "request", "responseheaders", "response",
             "websocket_start", "websocket_message", "websocket_end"),
    "tcp": ("tcp_start", "tcp_message", "tcp_end"),
    "udp": ("udp_start", "udp_message", "udp_end"),
    "dns": ("dns_request", "dns_response"),
}
REPEATING_HOOKS = frozenset({"websocket_message", "tcp_message", "udp_message"})
# Not a mitmproxy hook: one chunk of a body a script streams through a callable.
STREAM_CHUNK = "stream_chunk"
# message.stream as the protocol's StreamMode.
STREAM_BUFFER, STREAM_PASS, STREAM_CALLBACK = 0, 1, 2
# How long hook calls wait for the `running` hooks (seconds).
RUNNING_WAIT = 5.0
# The core's announcement of its bound address (not an option: see _set_listen_addrs).
LISTEN_ADDRS_OPTION = "flowtap_listen_addrs"
NOT_SENT = frozenset({"configure", "running", "done", "update", "add_log", "tick", "load"})


# Bodies over this size are not kept in a flow between its hook calls (see `_forget_large_bodies`):
# the proxy sends them in pieces of this size.
LARGE_BODY_BYTES = 1024 * 1024


def _forget_large_bodies(flow):
    """Drops the request and response bodies over `LARGE_BODY_BYTES` from a flow kept for its
    next hook call. Every call that needs a body brings it again, so keeping the old one would
    only hold a large body twice while the next call's copy arrives (a 200 MiB upload cost the
    worker 400 MiB). A script that reads such a body outside its hooks sees None."""
    for name in ("request", "response"):
        attrs = flow.__dict__
        state_name, part_name = "_part_state_" + name, "_part_" + name
        state = attrs.get(state_name)
        if state is not None:
            # A part no script read stays unbuilt: the host's PartState knows its length.
            size = getattr(state, "content_length", None) if type(state) is not dict \
                else len(state.get("content") or b"")
            if size is not None and size > LARGE_BODY_BYTES:
                slim = dict(state.items())
                slim["content"] = None
                attrs[state_name] = slim
            continue
        message = attrs.get(part_name)
        content = getattr(message, "_raw_content", None)
        if content is not None and len(content) > LARGE_BODY_BYTES:
            message._raw_content = None


def _tls_data(hook, client, server, state, options):
    """The argument of a TLS hook: `ClientHelloData` for `tls_clienthello`, else `TlsData` for
    the connection the hook is about (`*_client`: the client's, `*_server`: the server's)."""
    from mitmproxy import tls
    from mitmproxy.proxy.context import Context
    context = Context(client, options)
    if server is not None:
        context.server = server
    if hook == "tls_clienthello":
        return tls.ClientHelloData(context, tls.ClientHello(state.get("client_hello") or b""))
    return tls.TlsData(client if hook.endswith("_client") else server, context)


class Call:
    """One hook call from the proxy, from arrival to reply."""

    __slots__ = ("session", "call_id", "hook", "state", "deadline", "observe_only", "key",
                 "seq", "lane", "replied", "subject", "before", "flow", "stream", "arrived",
                 "deadline_ms", "thread")

    def __init__(self, session, call_id, hook, state, deadline_ms, observe_only):
        self.session, self.call_id, self.hook, self.state = session, call_id, hook, state
        self.arrived = time.monotonic()
        self.deadline_ms = deadline_ms
        self.deadline = self.arrived + deadline_ms / 1000 if deadline_ms else None
        self.thread = None  # the thread running its handlers, once one does
        self.observe_only = observe_only
        self.key = state.get("id", "")
        self.seq = 0  # its number in the order of arrival
        self.lane = _lane_of(hook, state)  # the client connection's id, when known
        self.replied = False
        self.subject = self.before = self.flow = None
        self.stream = 0  # StreamMode after a *headers hook


class Lost:
    """An event that took a number but never reached Python as a call (see `order.Order`)."""

    __slots__ = ("seq", "key", "lane", "observe_only")

    def __init__(self, seq, observed):
        self.seq, self.key, self.lane, self.observe_only = seq, None, None, observed


def _lane_of(hook, state):
    """The id of a call's client connection: the subject of a connection hook, a flow's
    `client_conn`; None when unknown."""
    if hook in CONNECTION_HOOKS:
        return state.get("id") or None
    client = state.get("client_conn")
    if client is None:
        return None
    client_id = getattr(client, "connection_id", None)
    if client_id is None:
        client_id = client.get("id")
    return client_id or None


class LoopFromThread:
    """The running loop as a sync hook on a worker thread sees it. mitmproxy runs sync hooks on
    its event loop, so scripts start tasks from them (`asyncio.create_task`,
    `asyncio.get_running_loop().call_soon`); here those reach the worker's loop thread-safely.
    A started task is a `concurrent.futures.Future` (it has `cancel`, `done`, `result`)."""

    def __init__(self, loop):
        self._loop = loop

    def create_task(self, coro, *, name=None, context=None):
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def call_soon(self, callback, *args, context=None):
        return self._loop.call_soon_threadsafe(callback, *args, context=context)

    def call_later(self, delay, callback, *args, context=None):
        self._loop.call_soon_threadsafe(self._loop.call_later, delay, callback, *args)

    def call_at(self, when, callback, *args, context=None):
        self._loop.call_soon_threadsafe(self._loop.call_at, when, callback, *args)

    def __getattr__(self, name):
        return getattr(self._loop, name)


def _infer_typespec(value):
    if isinstance(value, bool):
        return bool
    if isinstance(value, int):
        return int
    if isinstance(value, float):
        return float
    if isinstance(value, str):
        return str
    if isinstance(value, (list, tuple)):
        return "sequence of str"
    return "optional str"


class Host:
    """The scripts of one worker process and everything that runs their hooks."""

    def __init__(self, bridge, specs):
        self.bridge = bridge
        # mitmdump's options with mitmdump's defaults, so scripts reading them find them.
        self.options = mitmdump_options.Options()
        self.master = master.Master(self)
        ctx.options = self.options
        ctx.master = self.master
        self.scripts = [scripts.Script(self, spec) for spec in specs]
        self.loop = None
        self.executor = None
        self.flows = {}
        self.conns = {}
        self.started = False
        self.is_running = False
        self.startup_error = ""
        # mitmdump's errorcheck: error records logged until the `running` hooks finished.
        self.startup_errors = logs.StartupErrors()
        self._table = {}
        self._async_hooks = set()
        # Which calls may start (see `order.Order`), under `_qlock`.
        self._order = order.Order()
        self._qlock = threading.Lock()
        self._lock = threading.Lock()
        self._in_hook = set()
        # The calls running (with or without a deadline), for the watchdog.
        self._active = {}
        # The threads that take the proxy's events (`_dispatcher`), and how many threads run
        # hooks besides them (the executor's): the watchdog replaces a worker whose hook
        # threads are all stuck.
        self.dispatcher_threads = set()
        self.executor_threads = 0
        self._serial = threading.Lock()
        self._control_ids = itertools.count(1)
        self._quiet_core = False
        self._done = False
        self._running_future = None
        # The `script_serial` option itself, read on every sync hook (its value changes in
        # place); None until the scripts started.
        self._serial_option = None

    # -- the loop ------------------------------------------------------------------------------

    def run(self):
        """Runs the event loop until the host stops (`done` hooks ran, see `_shutdown`)."""
        logs.install(self)
        self._loop_thread_obj = threading.current_thread()
        self.loop = asyncio.new_event_loop()
        self._loop_from_thread = LoopFromThread(self.loop)
        asyncio.set_event_loop(self.loop)
        self._start_dispatchers(1)
        try:
            self.loop.run_forever()
        finally:
            if self.executor:
                self.executor.shutdown(wait=False, cancel_futures=True)
            self.loop.close()

    def _start_dispatchers(self, count):
        for _ in range(count):
            threading.Thread(target=self._dispatcher, name="script-dispatch", daemon=True).start()

    def _dispatcher(self):
        """Takes the proxy's events: runs hook calls `order.Order` lets start (the first here,
        others on the executor), hands the rest to the loop. Never waits for another
        dispatcher: a call that may not start yet is left to the thread that finishes what it
        waits for."""
        self.dispatcher_threads.add(threading.get_ident())
        while True:
            got = self.bridge.wait_one()
            if got is None:
                return
            self._arrived(*got)
            # Nothing of the event stays referenced while this thread waits for the next (it
            # may read the next call's bodies meanwhile: a large body must not be held twice).
            got = None

    def _arrived(self, seq, after, item):
        """One event from the proxy (see `_dispatcher`)."""
        # An observed call (or one that never reached Python as a call) holds the calls
        # after it until `Order` admitted it; so does Running (its hooks start first).
        observed = (item[0] in ("hook", "error") and bool(item[-1])) or item[0] == "running"
        call = None
        try:
            if item[0] == "hook":
                call = Call(*item[1:])
                call.seq = seq
            else:
                self._take(item)
                if observed:
                    call = Lost(seq, True)
        except Exception:
            if self.loop.is_closed():
                # The host finished (`done` ran): an event after that reaches nothing.
                return
            oplog.exception("script host: failed to take %s", item[0])
            call = Lost(seq, observed)
        if call is None:
            return
        with self._qlock:
            started = self._order.arrive(call, after)
        if not started:
            return
        for other in started[1:]:
            self.executor.submit(self._drive, other)
        self._drive(started[0])

    def _take(self, item):
        """Handles an event that is no hook call."""
        kind = item[0]
        if kind == "running":
            self._running_future = asyncio.run_coroutine_threadsafe(self._running(item[1]),
                                                                    self.loop)
        elif kind == "error":
            oplog.error("script host: an event from the proxy was lost: %s", item[1])
        elif self.loop.is_closed():
            # The host finished (its `done` hooks ran): a late Done or Configure finds no
            # loop, and there is nothing left to do with it.
            return
        else:
            self.loop.call_soon_threadsafe(self._dispatch, item)

    def _dispatch(self, item):
        try:
            self._handle(item)
        except Exception:
            oplog.exception("script host: failed to handle %s", item[0])

    def _handle(self, item):
        kind = item[0]
        if kind == "hello":
            self._hello(*item[1:])
        elif kind == "configure":
            self._configure_from_core(*item[1:])
        elif kind == "control_result":
            _, _, control_id, error = item
            if error:
                oplog.warning("the proxy refused control %s: %s", control_id, error)
        elif kind == "done":
            self.loop.create_task(self._shutdown())

    # -- start-up ------------------------------------------------------------------------------

    def _hello(self, session, core_options, deferred):
        if not self.started:
            self.started = True
            try:
                self._start(core_options, deferred)
            except Exception as e:
                log.error("script host failed to start:\n%s", scripts.format_traceback(e))
            if not self.startup_error:
                self.startup_error = self.startup_errors.message()
            if self.startup_error:
                self.startup_errors.finish()
        self.bridge.ready(session, self._script_infos(), self.startup_error)

    def _start(self, core_options, deferred):
        for name, value in core_options.items():
            self.options.add_option(name, _infer_typespec(value), value, "proxy option", core=True)
        self.options.deferred.update(deferred)
        self.options.process_deferred()
        self.options.add_option("script_serial", bool, False,
                                "Run one sync hook at a time, as mitmproxy does.")
        self.options.add_option("script_threads", int, 32,
                                "Threads that run sync hooks of different flows concurrently.")
        self._serial_option = self.options.spec("script_serial")
        # Each failure is logged as mitmdump logs it; an error logged during start-up ends the
        # proxy with status 1 (see `_hello`).
        failed = False
        for script in self.scripts:
            before = self.options.keys()
            try:
                script.load(self.options)
            except scripts.LoadHookError as e:
                failed = True
                log.error("Addon error: %s\n%s", e.original, scripts.format_traceback(e.original))
            except exceptions.OptionsError as e:
                # mitmdump refuses a missing script before anything is logged.
                failed = True
                self.startup_error = f"flowtap: {e}"
            except Exception as e:
                failed = True
                log.error("error in script %s\n%s", script.path, scripts.format_traceback(e))
            script.option_names = sorted(self.options.keys() - before)
        self._rebuild_table()
        if not failed:
            for script in self.scripts:
                self._configure_script(script, self.options.keys())
        self.options.on_change = self._on_options_changed
        self.options.on_core_change = self._on_core_options_changed
        if self.options.deferred:
            log.warning("Unknown options: %s", ", ".join(sorted(self.options.deferred)))
        workers = max(1, self.options.script_threads)
        self.executor = concurrent.futures.ThreadPoolExecutor(
            workers, thread_name_prefix="script-hook"
        )
        self.executor_threads = workers
        self._start_dispatchers(workers - 1)
        # The first beat before Ready: a first hook that takes the interpreter for ever is
        # caught even if the watchdog's thread has not run yet.
        watchdog.arm(self)
        watchdog.Watchdog(self).start()
        self.loop.create_task(self._watch_files())
        if "tick" in self._table:
            self.loop.create_task(self._tick())

    def _configure_script(self, script, updated):
        """Runs the script's `configure` hooks; a failure is logged (as mitmdump logs it) and
        returned."""
        for handler in script.handlers.get("configure", []):
            token = logs.current_script.set(script.name)
            try:
                handler.fn(set(updated))
            except Exception as e:
                text = f"error in script {script.path}\n{scripts.format_traceback(e)}"
                log.error("%s", text)
                return text
            finally:
                logs.current_script.reset(token)
        return None

    def _script_infos(self):
        infos = []
        for script in self.scripts:
            names = script.hook_names() - NOT_SENT
            if "update" in script.handlers:
                names |= FLOW_HOOKS
            hook_specs = []
            for name in sorted(names):
                implemented = name in script.handlers
                hook_specs.append((name, implemented and name in NEEDS_BODY,
                                   implemented and name not in OBSERVE_ONLY))
            opts = []
            for name in getattr(script, "option_names", []):
                spec = self.options.spec(name)
                opts.append((name, spec.typespec, spec.default, spec.help, spec.choices or []))
            infos.append((script.path, hook_specs, opts))
        return infos

    def _rebuild_table(self):
        table = {}
        for script in self.scripts:
            for hook, handlers in script.handlers.items():
                table.setdefault(hook, []).extend(handlers)
        self._table = table
        self._async_hooks = {h for h, hs in table.items() if any(x.is_async for x in hs)}

    # -- options -------------------------------------------------------------------------------

    def _on_options_changed(self, changed):
        for script in self.scripts:
            for handler in script.handlers.get("configure", []):
                token = logs.current_script.set(script.name)
                try:
                    handler.fn(set(changed))
                except exceptions.OptionsError:
                    raise
                except Exception as e:
                    log.error("error in script %s\n%s", script.path, scripts.format_traceback(e))
                finally:
                    logs.current_script.reset(token)

    def _on_core_options_changed(self, values):
        if not self._quiet_core:
            self.send_control(None, "set_options", values)

    def _configure_from_core(self, session, values):
        error = ""
        bound = values.pop(LISTEN_ADDRS_OPTION, None)
        if bound is not None:
            self._set_listen_addrs(bound)
        self._quiet_core = True
        try:
            for name, value in values.items():
                if name not in self.options:
                    self.options.add_option(name, _infer_typespec(value), value, "proxy option",
                                            core=True)
            if values:
                self.options.update(**values)
        except (exceptions.OptionsError, KeyError) as e:
            error = str(e)
        finally:
            self._quiet_core = False
        # Before any call can take the interpreter: a hook that never gives it back is then
        # judged by the limit just configured, not by the one before it.
        watchdog.arm(self)
        self.bridge.configure_result(session, error)

    def _set_listen_addrs(self, text):
        """One `SPEC=HOST:PORT` line per listener from the proxy once it is bound: what
        `proxyserver.servers` shows."""
        proxyserver = self.master.addons._builtins()["proxyserver"]
        for line in text.splitlines():
            spec, _, addr = line.rpartition("=")
            host, _, port = addr.rpartition(":")
            try:
                listen = (host.strip("[]"), int(port))
            except ValueError:
                log.warning("script host: unreadable listen address %r", line)
                continue
            proxyserver.set_listen_addrs(spec, [listen])

    # -- lifecycle -----------------------------------------------------------------------------

    async def _run_lifecycle(self, hook, scripts_=None, *args):
        for script in scripts_ or self.scripts:
            for handler in script.handlers.get(hook, []):
                token = logs.current_script.set(script.name)
                try:
                    result = handler.fn(*args)
                    if asyncio.iscoroutine(result):
                        await result
                except Exception as e:
                    log.error("Addon error: %s\n%s", e, scripts.format_traceback(e))
                finally:
                    logs.current_script.reset(token)

    async def _running(self, session):
        if not self.is_running:
            self.is_running = True
            await self._run_lifecycle("running")
            # As mitmdump's errorcheck: an error logged before the `running` hooks finished
            # ends the proxy that started them with status 1 (a second Ready says so). Later
            # proxies of a shared worker are not refused for it: its `running` hooks ran.
            await asyncio.sleep(0)
            lines = self.startup_errors.finish()
            if lines and not self.startup_error:
                report = self.startup_errors.message(lines)
                self.bridge.ready(session, self._script_infos(), report)
        else:
            self.startup_errors.finish()

    async def _shutdown(self):
        if self._done:
            return
        self._done = True
        await self._run_lifecycle("done")
        # Before the Rust side learns the host finished: the process may end right after.
        finalise.finalise()
        self.bridge.finished()
        self.loop.stop()

    async def _tick(self):
        while not self._done:
            await asyncio.sleep(0.1)
            for handler in self._table.get("tick", []):
                try:
                    await self.loop.run_in_executor(self.executor, handler.fn)
                except Exception as e:
                    log.error("Addon error: %s\n%s", e, scripts.format_traceback(e))

    async def _watch_files(self):
        """Reloads a script whose file changed (mtime polled once a second)."""
        while not self._done:
            await asyncio.sleep(1)
            for script in self.scripts:
                if script.changed_on_disk():
                    await self._reload(script)

    async def _reload(self, script):
        log.info("Loading script %s", script.path)
        if script.loaded:
            await self._run_lifecycle("done", [script])
        before = self.options.keys()
        try:
            script.load(self.options)
        except Exception as e:
            script.module = None
            script.handlers = {}
            log.error("error in script %s\n%s", script.path, scripts.format_traceback(e))
        else:
            script.option_names = sorted(set(getattr(script, "option_names", []))
                                         | (self.options.keys() - before))
            if self._configure_script(script, self.options.keys()) is not None:
                script.module = None
                script.handlers = {}
            elif self.is_running:
                await self._run_lifecycle("running", [script])
        self._rebuild_table()
        # The cores add hooks the new version implements to those they call.
        self.bridge.ready(None, self._script_infos(), "")

    def on_log(self, message, level):
        """Feeds `add_log` / old `log(entry)` hooks, outside the caller's thread."""
        handlers = self._table.get("add_log")
        if handlers and self.loop is not None:
            entry = LogEntry(message, level)
            self.loop.call_soon_threadsafe(self._feed_log, handlers, entry)

    def _feed_log(self, handlers, entry):
        for handler in handlers:
            try:
                handler.fn(entry)
            except Exception:
                pass

    # -- hook calls ----------------------------------------------------------------------------

    def _drive(self, call):
        """Runs `call`, then the calls its end lets start (the first in this thread, others on
        the executor); a call with async handlers goes to the loop, which carries on from
        there."""
        running = self._running_future
        if running is not None and not running.done():
            # Hook calls wait for the `running` hooks, as in mitmproxy.
            concurrent.futures.wait([running], timeout=RUNNING_WAIT)
        while call is not None:
            call.thread = threading.get_ident()
            self._active[(call.session, call.call_id)] = call
            if call.hook == STREAM_CHUNK:
                self._stream_chunk(call)
                call = self._pop_next(call)
                continue
            handlers = self._table.get(call.hook, [])
            if call.hook in self._async_hooks:
                asyncio.run_coroutine_threadsafe(self._run_async(call, handlers), self.loop)
                return
            self._run_sync(call, handlers)
            call = self._pop_next(call)

    def _pop_next(self, call):
        """The next call to run in this thread after `call` finished; other calls its end lets
        start go to the executor."""
        self._active.pop((call.session, call.call_id), None)
        with self._qlock:
            started = self._order.finish(call)
        if not started:
            return None
        for other in started[1:]:
            self.executor.submit(self._drive, other)
        return started[0]

    def _run_sync(self, call, handlers):
        errors = []
        try:
            args = self._prepare(call)
            option = self._serial_option
            serial = option.value if option is not None else self.options.script_serial
            skip = None
            for handler in handlers:
                if handler.script is skip or not handler.script.loaded:
                    continue
                if call.replied:
                    break  # timed out: stop changing a flow the proxy has moved on with
                outcome = self._call_sync(call, handler, args, errors, serial)
                if outcome == "halt":
                    break
                if outcome == "error":
                    skip = handler.script
            self._after_chain(call, errors)
        except Exception:
            oplog.exception("script host: hook %s failed", call.hook)
            self._reply(call, CONTINUE, None, errors)

    def _call_sync(self, call, handler, args, errors, serial):
        """Runs one handler: "ok", "error" (the rest of its script is skipped) or "halt"."""
        token = logs.current_script.set(handler.script.name)
        # mitmproxy runs sync hooks on its event loop, so scripts call asyncio.create_task()
        # in them: on this thread that reaches the worker's loop through a stand-in.
        outside_loop = asyncio.events._get_running_loop() is None
        if outside_loop:
            asyncio.events._set_running_loop(self._loop_from_thread)
        try:
            if serial and not handler.concurrent:
                with self._serial:
                    handler.fn(*args)
            else:
                handler.fn(*args)
            return "ok"
        except exceptions.AddonHalt:
            return "halt"
        except Exception as e:
            self._record_error(call, handler, e, errors)
            return "error"
        finally:
            if outside_loop:
                asyncio.events._set_running_loop(None)
            logs.current_script.reset(token)

    async def _run_async(self, call, handlers):
        errors = []
        call.thread = threading.get_ident()
        try:
            args = self._prepare(call)
            chain = self._chain_async(call, handlers, args, errors)
            if call.deadline is not None:
                try:
                    await asyncio.wait_for(chain, max(0.0, call.deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    pass
            else:
                await chain
            self._after_chain(call, errors)
        except Exception:
            oplog.exception("script host: hook %s failed", call.hook)
            self._reply(call, CONTINUE, None, errors)
        finally:
            nxt = self._pop_next(call)
            if nxt is not None:
                self.executor.submit(self._drive, nxt)

    async def _chain_async(self, call, handlers, args, errors):
        serial = self.options.script_serial
        skip = None
        for handler in handlers:
            if handler.script is skip or not handler.script.loaded:
                continue
            if handler.is_async:
                token = logs.current_script.set(handler.script.name)
                try:
                    await handler.fn(*args)
                except exceptions.AddonHalt:
                    return
                except Exception as e:
                    self._record_error(call, handler, e, errors)
                    skip = handler.script
                finally:
                    logs.current_script.reset(token)
            else:
                outcome = await self.loop.run_in_executor(
                    self.executor, contextvars.copy_context().run, self._call_sync, call, handler,
                    args, errors, serial,
                )
                if outcome == "halt":
                    return
                if outcome == "error":
                    skip = handler.script

    def _record_error(self, call, handler, exc, errors):
        tb = scripts.format_traceback(exc)
        # Logged here, once; the proxy does not log the reply's copy again.
        errors.append((handler.script.path, call.hook, tb))
        log.error("Addon error: %s\n%s", exc, tb)

    # -- flows in and out ----------------------------------------------------------------------

    def _prepare(self, call):
        """Updates (or creates) the Python objects for the call; returns the hook's arguments."""
        state = call.state
        if call.hook in CONNECTION_HOOKS:
            client = self._conn(Client, state.get("client_conn"))
            server = self._conn(Server, state.get("server_conn"))
            call.flow = (client, server)
            call.before = (client.get_state() if client else None,
                           server.get_state() if server else None)
            if call.hook in TLS_HOOKS:
                call.subject = _tls_data(call.hook, client, server, state, self.options)
                return (call.subject,)
            if call.hook == "socks5_auth":
                from mitmproxy.proxy.layers.modes import Socks5AuthData
                username, password, valid = state.get("socks5_auth") or ("", "", False)
                call.subject = Socks5AuthData(client, username, password, valid)
                return (call.subject,)
            if call.hook.startswith("client"):
                return (client,)
            return (scripts.server_hook_data(client, server),)
        live = state.pop("live", True)
        flow = self.flows.get(call.key)
        if flow is None:
            flow = Flow.from_state(state)
            self.flows[call.key] = flow
        else:
            flow.set_state(state)
        flow.live = live
        flow._flowtap_control = self
        flow._flowtap_session = call.session
        call.flow = flow
        if call.hook in ("requestheaders", "responseheaders"):
            _preset_stream(flow, call.hook[:-len("headers")], self.options)
        # The bridge gives the state in get_state()'s own shape (tuples where it has tuples), so
        # the state as received is the "before" of the change test.
        call.before = state
        with self._lock:
            self._in_hook.add(call.key)
        return (flow,)

    def _conn(self, cls, state):
        if state is None:
            return None
        conn = self.conns.get(state["id"])
        if conn is None or not isinstance(conn, cls):
            conn = cls.from_state(state)
            self.conns[state["id"]] = conn
        else:
            conn.set_state(state)
        return conn

    def _after_chain(self, call, errors):
        if call.hook in FLOW_HOOKS:
            for handler in self._table.get("update", []):
                if handler.script.loaded:
                    self._call_sync(call, handler, ([call.flow],), errors, False)
        if call.hook in CONNECTION_HOOKS:
            verdict, state = self._connection_outcome(call)
        else:
            verdict, state = self._flow_outcome(call)
        self._reply(call, verdict, state, errors)
        if call.hook not in CONNECTION_HOOKS and self.flows.get(call.key) is call.flow:
            _forget_large_bodies(call.flow)
        # The call is answered: its states (and the bodies in them) are not needed any more.
        call.state = call.before = None

    def _connection_outcome(self, call):
        client, server = call.flow
        after = (client.get_state() if client else None, server.get_state() if server else None)
        if call.hook in ("client_disconnected", "server_disconnected", "server_connect_error"):
            for conn in call.flow:
                if conn is not None and (conn is client) == (call.hook == "client_disconnected"):
                    self.conns.pop(conn.id, None)
        if after == call.before:
            return CONTINUE, None
        return CONTINUE, {"id": call.key, "client_conn": after[0], "server_conn": after[1]}

    def _flow_outcome(self, call):
        flow, before = call.flow, call.before
        after = raw_state(flow)
        was_killed = bool(before["error"]) and before["error"]["msg"] == Error.KILLED_MESSAGE
        if flow.error is not None and flow.error.msg == Error.KILLED_MESSAGE and not was_killed:
            verdict = KILL
        elif flow.intercepted:
            verdict = INTERCEPT
        elif (call.hook in RESPOND_HOOKS and before.get("response") is None
              and getattr(flow, "response", None) is not None):
            verdict = RESPOND
        else:
            verdict = CONTINUE
        finished = call.hook in FINAL_HOOKS or (
            call.hook == "response" and getattr(flow, "websocket", None) is None
        ) or verdict == KILL or not self._more_to_come(flow, call.hook)
        if finished and not flow.intercepted:
            self.flows.pop(call.key, None)
        if call.hook in ("requestheaders", "responseheaders"):
            call.stream = _stream_mode(flow, call.hook[:-len("headers")])
        if after == before:
            return verdict, None
        return verdict, _slim(after, before)

    def _more_to_come(self, flow, hook, streaming=True):
        """True while a hook of `flow` after `hook` may still be called: a script implements a
        later one of its lifecycle, or (with `streaming`) streams a body through a callable.
        An `error` hook alone keeps no flow: it may never come, and it gets a new object."""
        order = LIFECYCLE.get(flow.type)
        if not order or hook not in order or "update" in self._table:
            return True
        index = order.index(hook)
        # A message hook repeats: the next message may come. (The proxy sends the end hooks of
        # a WebSocket or TCP flow whenever a script implements one of its hooks.)
        if hook in REPEATING_HOOKS:
            index -= 1
        if any(h in self._table for h in order[index + 1:]):
            return True
        return streaming and flow.type == "http" and STREAM_CALLBACK in (
            _stream_mode(flow, "request"), _stream_mode(flow, "response"))

    def _stream_chunk(self, call):
        """Runs one chunk of a streamed body through the script's callable; the empty chunk
        after the last one lets it flush, and ends the worker's interest in the flow."""
        state = call.state
        name = "response" if state.get("response") is not None else "request"
        chunk = state[name]["content"] or b""
        flow = self.flows.get(call.key)
        fn = getattr(getattr(flow, name, None), "stream", None)
        out = chunk
        if callable(fn):
            try:
                result = fn(chunk)
                out = result if isinstance(result, (bytes, bytearray)) else b"".join(result)
            except Exception as e:
                log.error("Addon error in the stream callable of %s: %s\n%s", flow.id, e,
                          scripts.format_traceback(e))
        if chunk == b"" and flow is not None and not flow.intercepted:
            last_hook = "requestheaders" if name == "request" else "responseheaders"
            if name == "response" or _stream_mode(flow, "response") != STREAM_CALLBACK:
                if not self._more_to_come(flow, last_hook, streaming=False):
                    self.flows.pop(call.key, None)
        with self._lock:
            if call.replied:
                return
            call.replied = True
            self.bridge.chunk_reply(call.session, call.call_id, name == "response", bytes(out))

    def _reply(self, call, verdict, state, errors):
        with self._lock:
            if call.replied:
                return
            call.replied = True
            self._in_hook.discard(call.key)
            if not call.observe_only:
                ignore = call.hook == "tls_clienthello" and bool(
                    getattr(call.subject, "ignore_connection", False))
                valid = (bool(getattr(call.subject, "valid", False))
                         if call.hook == "socks5_auth" else None)
                self.bridge.hook_reply(call.session, call.call_id, verdict, state, errors, False,
                                       call.stream, ignore, valid)

    def time_out(self, call):
        """Answers a call whose deadline passed (once); its flow goes on unchanged."""
        with self._lock:
            if call.replied:
                return
            call.replied = True
            self._in_hook.discard(call.key)
            if not call.observe_only:
                self.bridge.hook_reply(call.session, call.call_id, CONTINUE, None, [], True)
        oplog.warning("hook %s for %s timed out", call.hook, call.key)

    # -- control -------------------------------------------------------------------------------

    def send_control(self, flow, kind, *payload):
        """Sends a control message to the proxy that owns `flow` (all proxies if None)."""
        session = getattr(flow, "_flowtap_session", None) if flow is not None else None
        control_id = next(self._control_ids)
        self.bridge.control(session, control_id, kind, *payload)

    def resume(self, flow):
        """Called by `Flow.resume()`; inside the flow's own hook the reply carries it instead."""
        with self._lock:
            if flow.id in self._in_hook:
                return
        self.send_control(flow, "resume", flow.id)

    def kill(self, flow):
        """Called by `Flow.kill()`; inside the flow's own hook the reply carries it instead."""
        with self._lock:
            if flow.id in self._in_hook:
                return
        self.send_control(flow, "kill", flow.id)


def _preset_stream(flow, name, options):
    """mitmproxy's `stream_large_bodies`, as the proxy applies it (a body announced by its
    Content-Length as larger than the limit goes through streamed): the script's `*headers`
    hook sees `flow.<name>.stream = True`, as under mitmdump, and may replace it."""
    limit = getattr(options, "stream_large_bodies", None)
    message = getattr(flow, name, None) if limit else None
    if message is None or message.stream:
        return
    try:
        announced = int(message.headers.get("content-length", ""))
        limit = human.parse_size(limit)
    except ValueError:
        return
    if limit is not None and announced > limit:
        message.stream = True


def _stream_mode(flow, name):
    """`flow.<name>.stream` as a StreamMode, without building a part no script read."""
    if flow.__dict__.get("_part_state_" + name) is not None:
        return STREAM_BUFFER
    stream = getattr(getattr(flow, name, None), "stream", False)
    if callable(stream):
        return STREAM_CALLBACK
    return STREAM_PASS if stream else STREAM_BUFFER


# Parts of a changed flow that a reply leaves out when they are as sent: the proxy keeps its own.
_KEPT_WHOLE = ("client_conn", "server_conn", "request")


def _slim(after, before):
    """The reply state of a changed flow without what the scripts left as it was sent: those
    of `_KEPT_WHOLE` are None and named in `unchanged`; an unchanged body is None (the proxy
    keeps its own body then, as it always did). A part no script read is still the lazy state
    it came as (see `mitmproxy.flow.raw_state`); the worker sends that one back without its
    body."""
    unchanged = []
    for name in _KEPT_WHOLE:
        if name == "request" and after.get("type") != "http":
            continue  # a DNS flow's "request" is its DNS request, kept whole
        value, sent = after.get(name), before.get(name)
        if value is not None and (value is sent or value == sent):
            after[name] = None
            unchanged.append(name)
    if unchanged:
        after["unchanged"] = unchanged
    if after.get("type") != "http":
        return after  # only HTTP messages have bodies
    for name in ("request", "response"):
        message, sent = after.get(name), before.get(name)
        if type(message) is dict and sent is not None and message["content"] is not None \
                and message["content"] == sent.get("content"):
            # A copy: an unread part's state is the flow's own (see mitmproxy.flow._Part).
            after[name] = message = dict(message)
            message["content"] = None
    return after


def main(bridge, specs):
    """Entry point used by the Rust worker: runs until the host stops, then finalises (see
    `finalise`: atexit handlers, files the scripts left open flushed and closed)."""
    finalise.console()
    try:
        Host(bridge, list(specs)).run()
    finally:
        finalise.finalise()
