"""`netlib` as scripts of mitmproxy 0.11-0.18 imported it, mapped onto flowtap's objects.

Only the names those scripts used: `netlib.odict` (`ODict`, `ODictCaseless`), `netlib.http`
(`Headers`), `netlib.tcp` (`Address`). The objects behave as they did then; see
`flowtap_host.legacy` for how old-API hooks receive them.
"""
