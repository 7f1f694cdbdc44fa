"""`flowtap_host.order.Order` driven deterministically: arrivals (in and out of number order, as
dispatcher threads bring them) and completions, several sessions, observed and awaited calls,
connection hooks and flow hooks of one client connection, HTTP/2 flows of one connection."""

import unittest

from flowtap_host.order import Order


class C:
    """A call as `Order` sees it."""

    def __init__(self, seq, key, lane=None, observed=False, name=""):
        self.seq, self.key, self.lane, self.observe_only = seq, key, lane, observed
        self.name = name or f"{key}#{seq}"

    def __repr__(self):
        return self.name


class Events:
    """Numbers events as the Rust inbox does: `after` is the last observed call before."""

    def __init__(self):
        self.seq = 0
        self.last_observed = None

    def call(self, key, lane=None, observed=False, name=""):
        call = C(self.seq, key, lane, observed, name)
        after = self.last_observed
        if observed:
            self.last_observed = self.seq
        self.seq += 1
        return call, after


def names(calls):
    return [c.name for c in calls]


class OrderTest(unittest.TestCase):
    def setUp(self):
        self.order = Order()
        self.events = Events()

    def arrive(self, *args, **kw):
        call, after = self.events.call(*args, **kw)
        return call, self.order.arrive(call, after)

    def test_a_flows_calls_run_one_at_a_time_in_arrival_order(self):
        a, started = self.arrive("f1", "c1", observed=True, name="requestheaders")
        self.assertEqual(names(started), ["requestheaders"])
        b, started = self.arrive("f1", "c1", name="request")
        self.assertEqual(started, [])
        self.assertEqual(names(self.order.finish(a)), ["request"])
        self.assertEqual(self.order.finish(b), [])
        self.assertTrue(self.order.idle())

    def test_awaited_calls_of_different_flows_run_concurrently(self):
        # Two sessions, four client connections, and two HTTP/2 flows of one connection.
        calls = [self.arrive(key, lane) for key, lane in
                 (("s1f1", "s1c1"), ("s1f2", "s1c2"), ("s2f1", "s2c1"), ("h2a", "c9"),
                  ("h2b", "c9"))]
        for call, started in calls:
            self.assertEqual(started, [call])
        for call, _ in calls:
            self.assertEqual(self.order.finish(call), [])
        self.assertTrue(self.order.idle())

    def test_a_connections_observed_calls_run_before_its_later_calls(self):
        conn, _ = self.arrive("c1", "c1", observed=True, name="server_connected")
        conn2, started = self.arrive("f1", "c1", observed=True, name="http_connected")
        self.assertEqual(started, [])
        req, started = self.arrive("f1", "c1", name="request")
        self.assertEqual(started, [])
        # Another connection, another session: not held.
        other, started = self.arrive("g1", "c2", name="other request")
        self.assertEqual(started, [other])
        self.assertEqual(names(self.order.finish(conn)), ["http_connected"])
        self.assertEqual(names(self.order.finish(conn2)), ["request"])
        self.assertEqual(self.order.finish(req), [])
        self.order.finish(other)
        self.assertTrue(self.order.idle())

    def test_an_awaited_call_before_an_observed_one_is_not_held_by_it(self):
        slow, started = self.arrive("h2a", "c1", name="requestheaders a")
        self.assertEqual(started, [slow])
        obs, started = self.arrive("c1", "c1", observed=True, name="server_connected")
        self.assertEqual(started, [obs])
        later, started = self.arrive("h2b", "c1", name="request b")
        self.assertEqual(started, [])
        self.assertEqual(names(self.order.finish(obs)), ["request b"])
        self.assertEqual(self.order.finish(later), [])
        self.assertEqual(self.order.finish(slow), [])
        self.assertTrue(self.order.idle())

    def test_held_calls_of_one_subject_stay_in_order(self):
        obs, _ = self.arrive("c1", "c1", observed=True, name="server_connected")
        a, started = self.arrive("f2", "c1", name="a")
        self.assertEqual(started, [])
        b, started = self.arrive("f2", "c1", observed=True, name="b")
        self.assertEqual(started, [])
        d, started = self.arrive("f3", "c2", name="d")
        self.assertEqual(started, [d])
        self.assertEqual(names(self.order.finish(obs)), ["a"])
        self.assertEqual(names(self.order.finish(a)), ["b"])
        self.assertEqual(self.order.finish(b), [])
        self.order.finish(d)
        self.assertTrue(self.order.idle())

    def test_an_observed_call_queued_behind_its_flow_still_holds_the_connection(self):
        req, started = self.arrive("f1", "c1", name="request f1")
        self.assertEqual(started, [req])
        ws, started = self.arrive("f1", "c1", observed=True, name="websocket_start f1")
        self.assertEqual(started, [])
        nxt, started = self.arrive("f2", "c1", name="requestheaders f2")
        self.assertEqual(started, [])
        self.assertEqual(names(self.order.finish(req)), ["websocket_start f1"])
        self.assertEqual(names(self.order.finish(ws)), ["requestheaders f2"])
        self.order.finish(nxt)
        self.assertTrue(self.order.idle())

    def test_out_of_order_arrivals_keep_the_observed_order(self):
        # Threads took 0..3 in order but bring them in another order.
        o1, a1 = self.events.call("c1", "c1", observed=True, name="server_connected")
        o2, a2 = self.events.call("f1", "c1", observed=True, name="http_connected")
        r, a3 = self.events.call("f1", "c1", name="request")
        x, a4 = self.events.call("g1", "c2", name="other")
        self.assertEqual(self.order.arrive(r, a3), [])
        self.assertEqual(self.order.arrive(o2, a2), [])
        # An awaited call after an observed one of another connection waits only for its
        # admission, not its end.
        self.assertEqual(self.order.arrive(x, a4), [])
        started = self.order.arrive(o1, a1)
        self.assertEqual(names(started), ["server_connected", "other"])
        self.assertEqual(names(self.order.finish(o1)), ["http_connected"])
        self.assertEqual(names(self.order.finish(o2)), ["request"])
        for call in (r, x):
            self.order.finish(call)
        self.assertTrue(self.order.idle())

    def test_awaited_calls_are_admitted_out_of_number_order(self):
        a, aa = self.events.call("f1", "c1", name="a")
        b, ab = self.events.call("f2", "c1", name="b")
        self.assertEqual(self.order.arrive(b, ab), [b])
        self.assertEqual(self.order.arrive(a, aa), [a])

    def test_an_event_that_never_reached_python_still_lets_the_others_go(self):
        lost = C(0, None, observed=True, name="lost")
        self.events.seq, self.events.last_observed = 1, 0
        r, after = self.events.call("f1", "c1", name="request")
        self.assertEqual(self.order.arrive(r, after), [])
        self.assertEqual(self.order.arrive(lost, None), [r])
        self.order.finish(r)
        self.assertTrue(self.order.idle())

    def test_stream_chunks_of_a_flow_run_in_order(self):
        chunks = [self.arrive("f1", "c1", observed=True, name=f"chunk{i}") for i in range(3)]
        self.assertEqual(names(chunks[0][1]), ["chunk0"])
        self.assertEqual(chunks[1][1] + chunks[2][1], [])
        self.assertEqual(names(self.order.finish(chunks[0][0])), ["chunk1"])
        self.assertEqual(names(self.order.finish(chunks[1][0])), ["chunk2"])
        self.assertEqual(self.order.finish(chunks[2][0]), [])
        self.assertTrue(self.order.idle())


if __name__ == "__main__":
    unittest.main()
