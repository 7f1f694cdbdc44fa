"""`mitmproxy.log`: the ALERT level and the deprecated `ctx.log` object."""

import logging

ALERT = logging.INFO + 1
logging.addLevelName(ALERT, "ALERT")

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "alert": ALERT, "warn": logging.WARNING,
          "error": logging.ERROR}


def level_name(levelno):
    """mitmproxy's level name for a `logging` level number."""
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warn"
    if levelno >= ALERT:
        return "alert"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


class LogEntry:
    """What old `log(entry)` / `add_log(entry)` hooks receive."""

    def __init__(self, msg, level):
        self.msg = msg
        self.level = level

    def __repr__(self):
        return f"LogEntry({self.msg!r}, {self.level!r})"


class Log:
    """`ctx.log`: deprecated in mitmproxy 9, still routed into the proxy's log."""

    def __init__(self, logger_name="mitmproxy.ctx"):
        self._logger = logging.getLogger(logger_name)

    def debug(self, txt):
        self._logger.debug(txt)

    def info(self, txt):
        self._logger.info(txt)

    def alert(self, txt):
        self._logger.log(ALERT, txt)

    def warn(self, txt):
        self._logger.warning(txt)

    warning = warn

    def error(self, txt):
        self._logger.error(txt)

    def __call__(self, txt, level="info"):
        self._logger.log(LEVELS.get(level, logging.INFO), txt)
