"""`libmproxy` as scripts of mitmproxy 0.11-0.18 imported it, mapped onto flowtap's objects.

Modules: `flow` (`FlowWriter`, `FlowReader`), `models` and `protocol.http` (`decoded`,
`HTTPResponse`, `HTTPRequest`, `send_connect_request`), `protocol` (`KILL`), `protocol.tcp`
(`TCPHandler`), `script` (`concurrent`), `filt` (`parse`), `utils`, `exceptions`,
`contentviews`. Old-API hooks receive the objects of `flowtap_host.legacy` (`flow.live`
among them); these modules give scripts the names they imported to make or test such
objects. What is not here (the proxy's layers, `next_layer`) is listed in docs/old-scripts.md
with the reason.
"""
