"""`mitmproxy.ctx`: `master`, `options` and `log`, set by the script host at start-up."""

from .log import Log
from .optmanager import Options

master = None
options = Options()
log = Log()
