"""`mitmproxy.test`: helpers for testing addons (`tflow`, `tutils`, `taddons`), as in mitmproxy."""
