"""Version numbers, as mitmproxy exposes them."""

VERSION = "12.3.1"
MITMPROXY = f"flowtap-mitmproxy {VERSION}"
FLOW_FORMAT_VERSION = 21
