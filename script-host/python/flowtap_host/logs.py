"""Script log lines: printed as mitmdump prints them, or sent to the proxy as LogRecord messages.

Every `logging` record (and so `ctx.log`, and the host's own reports of a script's errors such
as "Addon error: ...") goes through one root handler, `BridgeHandler`:

- A worker a proxy spawned for itself shares that proxy's standard output: it prints the line
  there itself, at once, in mitmdump's format (`[12:34:56.789] message`, coloured on a
  terminal), when the record's level passes `termlog_verbosity`. Printing here, in the thread
  that logged, keeps the line in order with the script's `print()` output and before the flow
  line the proxy prints after the hook's reply.
- A shared worker (`script-host --listen`) sends every record to its sessions; each proxy
  prints it the same way on its own standard output (script-client's `termlog`).

It also feeds old `log(entry)` / `add_log` hooks, and remembers the error records logged during
start-up (`StartupErrors`): mitmdump exits with status 1 when an error was logged before its
`running` hooks finished, and so does flowtap.
"""

import contextvars
import logging
import sys
import threading
import time

from mitmproxy import log as mlog

# The logger of the worker's own operational lines ("hook X timed out", its internal errors):
# they go to the process's log on stderr, not among the scripts' lines.
OPERATIONAL = "flowtap.worker"

# The script whose hook is running in this thread or task, for the record's `script` field.
current_script = contextvars.ContextVar("flowtap_current_script", default="")

# mitmdump's colours (mitmproxy.log.LOG_COLORS) as ANSI codes: red, yellow, magenta.
_COLORS = {logging.ERROR: 31, logging.WARNING: 33, mlog.ALERT: 35}
_RESET = "\033[0m"

# `termlog_verbosity` -> the lowest level printed.
VERBOSITY = {"error": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO,
             "alert": mlog.ALERT, "debug": logging.DEBUG}


def format_line(record, colorize=False):
    """One record as mitmdump's terminal log prints it (`mitmproxy.log.MitmFormatter`): the
    local time to the millisecond in brackets, the client's address in brackets when the record
    has one, the message and the exception's traceback if any."""
    created = time.localtime(record.created)
    stamp = "%s.%03d" % (time.strftime("%H:%M:%S", created), int(record.msecs))
    message = record.getMessage()
    if record.exc_info:
        message = f"{message}\n{_EXC_FORMATTER.formatException(record.exc_info)}"
    client = getattr(record, "client", None)
    if colorize:
        stamp = f"\033[36m\033[2m[{stamp}]{_RESET}"
        color = _COLORS.get(record.levelno)
        message = (f"\033[{color}m" if color else "") + message + _RESET
        prefix = stamp + (f"\033[33m\033[2m[{_address(client)}]{_RESET}" if client else "")
    else:
        prefix = f"[{stamp}]" + (f"[{_address(client)}]" if client else "")
    return f"{prefix} {message}"


_EXC_FORMATTER = logging.Formatter()


def _address(address):
    """mitmproxy.utils.human.format_address, for the `client` of a record."""
    try:
        host, port = address[0], address[1]
    except (TypeError, IndexError, KeyError):
        return str(address)
    if ":" in str(host):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def threshold(options):
    """The lowest level `termlog_verbosity` lets through (info when it is unset or unknown)."""
    try:
        value = options.termlog_verbosity
    except (AttributeError, KeyError):
        value = "info"
    return VERBOSITY.get(str(value).lower(), logging.INFO)


class StartupErrors:
    """The error records logged since the host started, until the `running` hooks finished
    (mitmproxy's `errorcheck` addon)."""

    def __init__(self):
        self.watching = True
        self.lines = []
        self._lock = threading.Lock()

    def add(self, line):
        with self._lock:
            # Bounded: a worker whose proxy never sends Running keeps watching.
            if self.watching and len(self.lines) < 100:
                self.lines.append(line)

    def finish(self):
        """Stops watching; returns the lines seen."""
        with self._lock:
            self.watching = False
            return list(self.lines)

    def message(self, lines=None):
        """The Ready's `startup_error` ("" when no error was logged): mitmdump's words, then
        the lines. A proxy whose worker printed them already prints only the first line, as
        mitmdump does ("Error logged during startup, exiting..."); others print it all."""
        lines = self.lines if lines is None else lines
        if not lines:
            return ""
        plural = "s" if len(lines) > 1 else ""
        return f"Error{plural} logged during startup:\n" + "\n".join(lines)


class BridgeHandler(logging.Handler):
    """Prints each record (spawned worker) or sends it to the proxies; also feeds old
    `log(entry)` / `add_log` hooks and notes start-up errors."""

    def __init__(self, host):
        super().__init__(logging.DEBUG)
        self._host = host
        self._local = threading.local()
        self._spawned = bool(getattr(host.bridge, "prints_log_lines", lambda: False)())
        out = sys.stdout
        self._colorize = self._spawned and _isatty(out)

    def emit(self, record):
        if getattr(self._local, "busy", False):
            return
        self._local.busy = True
        try:
            host = self._host
            level = mlog.level_name(record.levelno)
            if record.name == OPERATIONAL:
                message = record.getMessage()
                if record.exc_info:
                    message = f"{message}\n{_EXC_FORMATTER.formatException(record.exc_info)}"
                oplog = getattr(host.bridge, "oplog", None)
                if oplog is not None:
                    oplog(level, message)
                return
            # asyncio's own complaints (a finished host's loop collected) are not the
            # scripts' start-up errors.
            if record.levelno >= logging.ERROR and host.startup_errors.watching \
                    and not record.name.startswith("asyncio"):
                host.startup_errors.add(format_line(record))
            if self._spawned:
                if record.levelno >= threshold(host.options):
                    _write(format_line(record, self._colorize))
            else:
                message = record.getMessage()
                if record.exc_info:
                    message = f"{message}\n{_EXC_FORMATTER.formatException(record.exc_info)}"
                script = current_script.get() or _script_from_logger(record.name)
                host.bridge.log(level, message, script)
            host.on_log(record.getMessage(), level)
        except Exception:  # a log record must never break a hook
            pass
        finally:
            self._local.busy = False


def _isatty(stream):
    try:
        return stream.isatty()
    except Exception:
        return False


def _write(line):
    """One line on standard output, at once (the proxy writes its flow lines there too)."""
    out = sys.stdout
    try:
        out.write(line + "\n")
        out.flush()
    except (OSError, ValueError):
        pass


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
    # As mitmdump sets them (mitmproxy.tools.main).
    for name in ("asyncio", "hpack", "tornado", "quic"):
        logging.getLogger(name).setLevel(logging.WARNING)
