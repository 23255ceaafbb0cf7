"""Where log lines go, and the filter that keeps secrets out of them.

In the foreground logs go to stderr (readings go to stdout); a detached
daemon logs to --logfile (reopened by itself after logrotate) or to syslog.
Every handler carries a filter that masks passwords and tokens, so no code
path can leak one by formatting an exception or a URL.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time
from typing import Iterable, List, Optional

LOGGER = "power"
FORMAT = "%(asctime)s %(levelname)s %(message)s"
SYSLOG_FORMAT = "power[%(process)d]: %(levelname)s %(message)s"


class UtcFormatter(logging.Formatter):
    """Times in UTC, written as the readings write them (2024-05-01T12:00:00.123Z),
    so a log line and the reading it speaks of show the same clock."""

    converter = time.gmtime

    def formatTime(self, record: logging.LogRecord, datefmt=None) -> str:  # noqa: N802
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


class RedactSecrets(logging.Filter):
    """Replace every configured secret in a record's text with ***."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets: List[str] = sorted(
            {s for s in secrets if s}, key=len, reverse=True
        )

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg = self.redact(message)
        record.args = None
        return True


def configure(
    level: int,
    foreground: bool,
    logfile: Optional[str],
    secrets: Iterable[str],
    fallback: str = "power.log",
) -> logging.Logger:
    """Set up the 'power' logger once, after any fork; return it.

    `fallback` is the log file of a detached daemon where there is no syslog.
    """
    log = logging.getLogger(LOGGER)
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    log.setLevel(level)
    log.propagate = False
    if logfile:
        handler: logging.Handler = logging.handlers.WatchedFileHandler(logfile)
        handler.setFormatter(UtcFormatter(FORMAT))
    elif foreground:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(UtcFormatter(FORMAT))
    elif os.path.exists("/dev/log"):
        handler = logging.handlers.SysLogHandler(
            address="/dev/log", facility=logging.handlers.SysLogHandler.LOG_DAEMON
        )
        handler.setFormatter(logging.Formatter(SYSLOG_FORMAT))
    else:  # no syslog here: never log nowhere
        handler = logging.handlers.WatchedFileHandler(fallback)
        handler.setFormatter(UtcFormatter(FORMAT))
    handler.addFilter(RedactSecrets(secrets))
    log.addHandler(handler)
    return log
