"""flowtap's mitmproxy-compatible scripting API.

Scripts written for mitmproxy import this package as they would import mitmproxy itself. The
objects mirror mitmproxy 12's; the flow state moves to and from the proxy in mitmproxy's own
`get_state()` shape. The runtime that loads scripts and runs hooks lives in `flowtap_host`.
"""

__version__ = "12.3.1"
