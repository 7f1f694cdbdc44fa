"""`libmproxy` as scripts of mitmproxy 0.11-0.18 imported it, mapped onto flowtap's objects.

Modules: `flow` (`FlowWriter`, `FlowReader`), `models` and `protocol.http` (`decoded`,
`HTTPResponse`, `HTTPRequest`), `protocol` (`KILL`), `script` (`concurrent`), `filt`
(`parse`), `utils`, `exceptions`. Old-API hooks receive the objects of
`flowtap_host.legacy`; these modules give scripts the names they imported to make or test
such objects. What is not here (proxy layers, `flow.live`, contentviews) is listed in
docs/old-scripts.md with the reason.
"""
