"""`mitmproxy.net`: protocol helpers (HTTP parsing pieces, encodings, server specs)."""
