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
        for bad in ("", "~x", "~c abc", "(~s", "~d"):
            with self.assertRaisesRegex(ValueError, "Invalid filter expression"):
                flowfilter.parse(bad)


if __name__ == "__main__":
    unittest.main()
