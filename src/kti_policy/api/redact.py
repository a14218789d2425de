"""Keep clear subject ids out of request logs.

``GET /v1/subjects/<id>`` carries the caller's clear id in the URL (the contract fixes that path),
so any access log line for it would store the id. ``SubjectPathFilter`` rewrites the path segment
in every record of the loggers it is installed on: werkzeug's request log under ``kti-policy
serve``, gunicorn's access and error logs in ``gunicorn.conf.py``.
"""

from __future__ import annotations

import logging
import re

# a second line of defence: the app puts the route it matched in the environ for the access logs
# (``app.log_target``); this catches the raw path in other lines (gunicorn's "Error handling
# request ..."), in any case and with doubled slashes
_SUBJECT_PATH = re.compile(r"(?i)(/+v1/+subjects/+)[^\s?#\"' ]+")
REDACTED = "<redacted>"


def redact(text: str) -> str:
    return _SUBJECT_PATH.sub(r"\g<1>" + REDACTED, text)


class SubjectPathFilter(logging.Filter):
    """Rewrites the formatted message; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Error handling request"):
            # gunicorn names the raw URI of a request the app failed on: not routed, not shown
            record.msg, record.args = "Error handling request (path not logged)", None
            return True
        try:
            message = record.getMessage()
        except Exception:  # a record whose args do not fit its format: leave it to the handler
            return True
        if "subjects/" in message.lower():
            record.msg, record.args = redact(message), None
        return True


def install(*logger_names: str) -> None:
    """Add the filter (once) to each named logger."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, SubjectPathFilter) for f in logger.filters):
            logger.addFilter(SubjectPathFilter())
