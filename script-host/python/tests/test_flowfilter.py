import unittest

from tests.support import http_state
from mitmproxy import flow as mflow, flowfilter, http


def _flow(**kw):
    return mflow.Flow.from_state(http_state(**kw))


class FlowFilterTest(unittest.TestCase):
    def test_operators_and_precedence(self):
        f = _flow(path="/api?q=1", host="example.com")
        f.response = http.Response.make(404, b"nope", {"Content-Type": "text/html"})
        self.assertTrue(flowfilter.match("~d example & ~c 404", f))
        self.assertFalse(flowfilter.match("~c 200", f))
        self.assertTrue(flowfilter.match("~m GET ~c 404", f))
        self.assertTrue(flowfilter.match("~c 200 | ~tcp | ~u api", f))
        self.assertTrue(flowfilter.match("!(~c 200)", f))
        self.assertTrue(flowfilter.match("~bs nope", f))
        self.assertTrue(flowfilter.match("~hq 'Host: example'", f))
        self.assertTrue(flowfilter.match("~ts html", f))
        self.assertTrue(flowfilter.match("EXAMPLE.COM", f))  # bare regex, case-insensitive
        self.assertTrue(flowfilter.match("~s", f))
        self.assertFalse(flowfilter.match("~q", f))

    def test_invalid(self):
        with self.assertRaisesRegex(ValueError, "Empty filter expression"):
            flowfilter.parse("")
        for bad in ("~x", "~c abc", "(~s", "~d", "( ~q ~s )", "~h(a)", "~qx", "~q!~s", "~h ["):
            with self.assertRaisesRegex(ValueError, "Invalid filter expression", msg=bad):
                flowfilter.parse(bad)

    def test_classes_and_descriptions(self):
        f = flowfilter.parse("~q ~s | ~e")
        self.assertIsInstance(f, flowfilter.FAnd)
        self.assertIsInstance(f.lst[0], flowfilter.FReq)
        self.assertIsInstance(f.lst[1], flowfilter.FOr)
        self.assertEqual(str(f), "has no response and (has response or has error)")
        self.assertEqual(f.pattern, "~q ~s | ~e")
        self.assertEqual(str(flowfilter.parse("!~h foo")), "not header matches /foo/im")
        self.assertEqual(flowfilter.parse("!~h foo").itm.expr, "foo")
        self.assertEqual(str(flowfilter.parse("~u 'a b' ~c 200")),
                         "url matches /a b/i and response code is 200")
        self.assertEqual(str(flowfilter.parse("~bq x")), "body request matches /x/is")
        self.assertEqual(flowfilter.parse(r"~u 'foobar\"\''").expr, "foobar\"'")

    def test_argument_less_operator_before_parenthesis_or_operator(self):
        f = _flow(path="/api?q=1", host="example.com")
        self.assertTrue(flowfilter.match("!(~tcp|~dns)", f))
        self.assertTrue(flowfilter.match("(~q)", f))
        self.assertFalse(flowfilter.match("(~s)", f))
        self.assertTrue(flowfilter.match("~q&~http", f))
        self.assertEqual(str(flowfilter.parse("!(~tcp|~dns)")),
                         "not (is a TCP Flow or is a DNS Flow)")


if __name__ == "__main__":
    unittest.main()
