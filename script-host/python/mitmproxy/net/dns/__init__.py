"""`mitmproxy.net.dns`: DNS wire-format helpers."""
