"""`mitmproxy.proxy`: only the hook data types scripts meet."""
