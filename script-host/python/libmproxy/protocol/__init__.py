"""`libmproxy.protocol`: `KILL`, the value `flow.reply(KILL)` kills a flow with."""

from flowtap_host.legacy import KILL  # noqa: F401
