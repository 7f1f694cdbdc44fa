"""`Watchdog`: answers hook calls past their deadline, and restarts the worker when hooks are
stuck.

It runs on a thread of its own (not the asyncio loop: an `async def` hook that blocks would
stop the loop, and with it a watchdog living there), every `TICK` seconds:

- A running call whose deadline passed is answered `timed_out`: the proxy applies its failure
  policy to the flow and goes on; the hook's late changes are dropped. A call has a deadline
  only when the proxy sets `hook_timeout`; without one a hook takes the time it takes, as in
  mitmdump (an `await asyncio.sleep(5)` is waited for).
- A call with a deadline still running `hook_stuck_timeout` seconds after it arrived is
  *stuck*. Without deadlines, the worker counts as stuck once all the threads that take the
  proxy's events (or all the threads that run hooks beside them) are busy with calls that
  have been running that long: it answers nobody any more. Either way: CPython cannot
  kill a thread, so a stuck hook keeps its thread (and its flow's later calls) forever, and
  enough of them leave no thread for anyone: the worker stops answering. The only sound way to
  get the threads back is a new process. The watchdog logs which hook is stuck, where (its
  Python stack), and asks the bridge to stop the worker with the failure status
  (`bridge.stuck`): the process exits non-zero. A worker the proxy spawned is spawned again by
  it; a shared worker (`--script-host`) is restarted by whatever runs it (Kubernetes restarts
  the container); meanwhile the proxies' pools count it down and rejoin it when it is back.

A hook that holds the GIL and never gives it back (C code that does not return: a regular
expression backtracking for ever) stops every Python thread, this one too. Each tick therefore
tells the bridge it ran (`bridge.heartbeat`); a Rust thread that needs no GIL ends the worker the
same way when the ticks stop for longer than `hook_stuck_timeout`.

`hook_stuck_timeout` is a proxy option (the proxy sends it in Hello as one of its own options;
`--set hook_stuck_timeout=SECONDS`, default four times `hook_timeout`, or 60 s without one; 0:
never). A worker that was not told uses four times each call's own deadline, or 60 s.
"""

import sys
import threading
import time
import traceback


# How often the watchdog looks (seconds).
TICK = 0.02
# `hook_stuck_timeout` as a multiple of the call's deadline, when the proxy did not send it.
STUCK_FACTOR = 4
# `hook_stuck_timeout` for calls without a deadline, when the proxy did not send it (seconds).
STUCK_WITHOUT_DEADLINE = 60.0


class Watchdog:
    """Watches `host._active` (the calls running, by (session, call id))."""

    def __init__(self, host):
        self._host = host
        self._thread = threading.Thread(target=self._run, name="script-watchdog", daemon=True)
        self._fired = False

    def start(self):
        self._thread.start()

    def _run(self):
        host = self._host
        while not host._done and not self._fired:
            time.sleep(TICK)
            # The Rust side ends the worker when this stops (a hook holds the GIL for ever).
            host.bridge.heartbeat(_stuck_limit(host.options) or 0.0)
            if host._active:
                self.check(time.monotonic())
        # Stopping (the `done` hooks may take their time): no more ticks, and none expected.
        host.bridge.heartbeat(0.0)

    def check(self, now):
        """Times out the calls past their deadline; stops the worker if one with a deadline is
        stuck, or if its hook threads are all stuck."""
        host = self._host
        limit = _stuck_limit(host.options)
        calls = list(host._active.values())
        for call in calls:
            if call.deadline is None or now < call.deadline:
                continue
            host.time_out(call)
            stuck_after = limit if limit is not None else STUCK_FACTOR * call.deadline_ms / 1000
            if stuck_after > 0 and now >= call.arrived + stuck_after and not self._fired:
                self._fired = True
                self._stuck(call, now - call.arrived, stuck_after)
                return
        stuck_after = limit if limit is not None else STUCK_WITHOUT_DEADLINE
        if stuck_after <= 0 or self._fired:
            return
        stuck = [c for c in calls if c.thread is not None and now >= c.arrived + stuck_after]
        if not stuck:
            return
        loop_thread = getattr(host, "_loop_thread_obj", None)
        loop_ident = loop_thread.ident if loop_thread is not None else None
        threads = {c.thread for c in stuck} - {loop_ident}
        dispatchers = host.dispatcher_threads
        taking = len(threads & dispatchers)
        running = len(threads - dispatchers)
        if (dispatchers and taking >= len(dispatchers)) or (
                host.executor_threads and running >= host.executor_threads):
            self._fired = True
            oldest = min(stuck, key=lambda c: c.arrived)
            self._stuck(oldest, now - oldest.arrived, stuck_after, every_thread=True)

    def _stuck(self, call, running, limit, every_thread=False):
        stuck = [c for c in list(self._host._active.values())
                 if c.arrived + limit <= time.monotonic()]
        frames = sys._current_frames()
        stack = ""
        frame = frames.get(call.thread) if call.thread is not None else None
        if frame is not None:
            lines = traceback.format_stack(frame)
            # From the script's handler on: the runtime's own frames say nothing new.
            calls = [i for i, line in enumerate(lines) if "in _call_sync" in line
                     or "in _chain_async" in line]
            stack = "".join(lines[calls[-1] + 1:] if calls else lines)
        every = "; every hook thread is taken by a stuck hook" if every_thread else ""
        message = (
            f"hook {call.hook} of {call.key} is stuck: still running {running:.1f}s after it "
            f"arrived (hook_stuck_timeout={limit:g}s; hooks stuck now: {len(stuck)}{every}). "
            f"Python threads cannot be stopped: this worker exits to be replaced.\n"
            f"Where the hook is:\n{stack}"
        )
        # Into the worker's own log (stderr), where the replacement is logged too.
        self._host.bridge.stuck(message)


def arm(host):
    """Beats at once with the `hook_stuck_timeout` just configured.

    The watchdog thread beats every tick, but a hook that takes the interpreter right after the
    options arrive (before the next tick) would leave the last beat with the limit from before
    them (none, at start): the Rust side would then wait for ever.
    """
    host.bridge.heartbeat(_stuck_limit(host.options) or 0.0)


def _stuck_limit(options):
    """`hook_stuck_timeout` in seconds as the proxy sent it, or None."""
    try:
        value = options.hook_stuck_timeout
    except (AttributeError, KeyError):
        return None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
