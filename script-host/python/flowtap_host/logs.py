"""Routes `logging` records (and so `ctx.log`) into the proxy's log as LogRecord messages."""

import contextvars
import logging
import threading

from mitmproxy import log as mlog

# The script whose hook is running in this thread or task, for the record's `script` field.
current_script = contextvars.ContextVar("flowtap_current_script", default="")


class BridgeHandler(logging.Handler):
    """Sends each record to the proxy; also feeds old `log(entry)` / `add_log` hooks."""

    def __init__(self, host):
        super().__init__(logging.DEBUG)
        self._host = host
        self._local = threading.local()
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record):
        if getattr(self._local, "busy", False):
            return
        self._local.busy = True
        try:
            message = self.format(record)
            script = current_script.get() or _script_from_logger(record.name)
            level = mlog.level_name(record.levelno)
            self._host.bridge.log(level, message, script)
            self._host.on_log(message, level)
        except Exception:  # a log record must never break a hook
            pass
        finally:
            self._local.busy = False


def _script_from_logger(name):
    prefix = "__mitmproxy_script__."
    return name[len(prefix):] if name.startswith(prefix) else ""


def install(host):
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, BridgeHandler):
            root.removeHandler(handler)
    root.addHandler(BridgeHandler(host))
    root.setLevel(logging.DEBUG)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
