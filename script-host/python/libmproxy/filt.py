"""`libmproxy.filt`: the filter language (`parse("~d example.com")`), used with
`flow.match(...)`; today's `mitmproxy.flowfilter` underneath."""

from mitmproxy.flowfilter import parse  # noqa: F401
