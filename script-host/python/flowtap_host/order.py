"""`Order`: which hook calls may start now. The one owner of the worker's ordering rules.

Pure: no threads, no locks, no clock. The host calls it under one lock, with every hook call as
it arrives (`arrive`) and as it finishes (`finish`); both return the calls that may start now,
in the order to start them. The Rust inbox only numbers the events as they arrive and says, for
each, the number of the last observed call before it (`after`); the dispatcher threads may bring
them here in another order.

The rules (docs/hooks.md, "Order"):

1. **A flow's calls (or a connection's: one subject, `call.key`) run one at a time, in the
   order they arrived.** The proxy sends an awaited call's successor only after its reply, but
   observed calls (and `stream_chunk`s) come back to back.
2. **An observed call is admitted before every call that arrived after it.** The proxy goes on
   without waiting for it, so this keeps its order across dispatcher threads: a call waits
   (without blocking anyone) until the last observed call before it (`after`) was admitted.
   Running counts as an observed call here: the calls after it find the `running` hooks
   started (and wait for them).
3. **Within one client connection (`call.lane`: its connection hooks and its flows), a call
   waits until the observed calls of other subjects that arrived before it finished**, as if
   the proxy had awaited them, as mitmproxy does: `server_connected`, `http_connected` and the
   next flow's `requestheaders` reach the scripts in the proxy's order. Awaited calls of
   different flows of one connection (HTTP/2) run concurrently: the proxy sent them without
   waiting.
4. Calls of different client connections, and of different sessions, never wait for each
   other.

A call is any object with `seq` (its arrival number), `key` (its subject), `lane` (its client
connection's id, or None) and `observe_only`.
"""

import collections


class Lane:
    """The calls of one client connection while some are observed calls not yet finished."""

    __slots__ = ("observed", "held")

    def __init__(self):
        # The observed calls admitted and not finished: arrival number -> subject key, in
        # arrival order.
        self.observed = {}
        # Calls waiting for those (or behind a held call of their subject), in arrival order.
        self.held = collections.deque()

    def blocks(self, call):
        """Whether an observed call of another subject that arrived before `call` is under
        way."""
        for seq, key in self.observed.items():
            if seq >= call.seq:
                return False
            if key != call.key:
                return True
        return False


class Order:
    """The ordering state of one worker (all sessions)."""

    __slots__ = ("_last_observed", "_early", "_queues", "_lanes")

    def __init__(self):
        # The number of the last observed call admitted (they are admitted in arrival order).
        self._last_observed = -1
        # Calls that arrived before the observed call they wait for was admitted: its number
        # -> the calls, in arrival order.
        self._early = {}
        # Per subject with a call running: the calls waiting behind it.
        self._queues = {}
        # Per client connection with observed calls under way: its `Lane`.
        self._lanes = {}

    def idle(self):
        """Nothing runs or waits."""
        return not (self._early or self._queues or self._lanes)

    def arrive(self, call, after):
        """`call` arrived (`after`: the number of the last observed call before it, or None).
        An event that is no hook call but holds the calls after it as an observed call does
        (Running, or a call Python could not be given) arrives as a call with `key` None. Returns the calls to start now."""
        if after is not None and after > self._last_observed:
            self._early.setdefault(after, []).append(call)
            return []
        started = []
        self._admit(call, started)
        return started

    def finish(self, call):
        """`call` finished (replied or not). Returns the calls to start now: the next of its
        subject first, then those its connection let go."""
        started = []
        lane = self._lanes.get(call.lane) if call.lane else None
        if lane is not None:
            if call.observe_only:
                lane.observed.pop(call.seq, None)
            waiting = collections.deque()
            waiting_keys = set()
            for held in lane.held:
                if held.key in waiting_keys or lane.blocks(held):
                    waiting.append(held)
                    waiting_keys.add(held.key)
                elif self._enqueue(held):
                    started.append(held)
            lane.held = waiting
            if not lane.held and not lane.observed:
                del self._lanes[call.lane]
        queue = self._queues.get(call.key)
        if queue is not None:
            if queue:
                started.insert(0, queue.popleft())
            else:
                del self._queues[call.key]
        return started

    def _admit(self, call, started):
        """Places `call` (rule 2 met), then, if it is observed, the calls that waited for it
        (in arrival order: the next observed one among them, then those that waited for that
        one)."""
        pending = collections.deque((call,))
        while pending:
            call = pending.popleft()
            if call.key is not None and self._place(call):
                started.append(call)
            if call.observe_only:
                self._last_observed = call.seq
                waiting = self._early.pop(call.seq, None)
                if waiting:
                    pending.extend(sorted(waiting, key=lambda c: c.seq))

    def _place(self, call):
        """True when `call` starts now; otherwise it waits in its subject's queue or its lane."""
        lane = self._lanes.get(call.lane) if call.lane else None
        if lane is None and call.lane and call.observe_only:
            lane = self._lanes[call.lane] = Lane()
        if lane is None:
            return self._enqueue(call)
        hold = lane.blocks(call) or any(held.key == call.key for held in lane.held)
        if call.observe_only:
            lane.observed[call.seq] = call.key
        if hold:
            lane.held.append(call)
            return False
        return self._enqueue(call)

    def _enqueue(self, call):
        queue = self._queues.get(call.key)
        if queue is not None:
            queue.append(call)
            return False
        self._queues[call.key] = collections.deque()
        return True
