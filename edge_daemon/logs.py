"""Logging set-up that suits journald and terminals alike, and URL credential redaction.

Under systemd (JOURNAL_STREAM is set) each line starts with a ``<N>`` syslog priority prefix, which
journald turns into the entry's priority, and carries no timestamp (journald adds its own).
On a terminal lines carry a timestamp and the level name instead. Library code logs; it never prints.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from urllib.parse import urlsplit, urlunsplit

_SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JournaldFormatter(logging.Formatter):
    """``<priority>logger: message``; journald parses the prefix (SyslogLevelPrefix=yes, the default)."""

    def format(self, record: logging.LogRecord) -> str:
        prio = _SYSLOG_PRIORITY.get(record.levelno, 6)
        text = super().format(record)
        # One journal entry per record: fold continuation lines (tracebacks) into the same entry.
        return f"<{prio}>" + text.replace("\n", "\n" + f"<{prio}>")


def setup_logging(level: str = "INFO") -> None:
    """Configure the root logger once, writing to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournaldFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # paho and ultralytics are chatty at INFO; keep the daemon's own lines readable.
    logging.getLogger("ultralytics").setLevel(max(logging.WARNING, logging.getLevelName(level)))


_INLINE_CRED = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@", re.IGNORECASE)


def redact_url(url: str) -> str:
    """Return ``url`` with any user:password replaced by ``***``. Safe on strings that are not URLs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _INLINE_CRED.sub(r"\g<scheme>***@", url)
    if parts.username is None and parts.password is None:
        return _INLINE_CRED.sub(r"\g<scheme>***@", url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
