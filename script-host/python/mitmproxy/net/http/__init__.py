"""`mitmproxy.net.http`: HTTP pieces below the flow objects (headers, URLs, cookies, forms)."""
