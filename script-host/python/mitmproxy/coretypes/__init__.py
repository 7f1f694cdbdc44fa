"""`mitmproxy.coretypes`: container types the flow objects are built from."""
