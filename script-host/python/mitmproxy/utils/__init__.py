"""mitmproxy.utils: the helpers scripts import from mitmproxy (`strutils`)."""
