"""`mitmproxy.log`: the ALERT level and the deprecated `ctx.log` object."""

import copy
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
        # A copy: later changes to a logged object do not change the entry.
        self.msg = copy.deepcopy(msg)
        self.level = level

    def __eq__(self, other):
        if isinstance(other, LogEntry):
            return self.__dict__ == other.__dict__
        return False

    __hash__ = object.__hash__

    def __repr__(self):
        return f"LogEntry({self.msg}, {self.level})"


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
