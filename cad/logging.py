"""Structured logs: one JSON object per line.

Never pass caller identity (089 or 911) or secrets in `extra`: the formatter drops known-sensitive keys
as a last line of defence, but the rule is not to log them at all.
"""

import json
import logging
import re
from datetime import UTC, datetime

SENSITIVE_KEYS = frozenset({"caller_name", "callback_number", "password", "token", "secret", "authorization"})
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# Database errors quote the rows they refused: PostgreSQL's "DETAIL:  Failing row contains (…)" (a
# check-constraint violation carries the whole row, caller identity included) and "Key (…)=(…)".
_ROW_DETAILS = (
    (re.compile(r"Failing row contains \(.*\)"), "Failing row contains ([redacted])"),
    (
        re.compile(r"(Key \([^)]*\))=\(.*?\)(?= already exists| is not present| conflicts)"),
        r"\1=([redacted])",
    ),
)


def scrub(text: str) -> str:
    """Exception text without the row values a database error quotes."""
    for pattern, replacement in _ROW_DETAILS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    """`center`: the centre's code, on every line (settings.LOGGING)."""

    def __init__(self, *args, center: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.center = center

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.center:
            entry["center"] = self.center
        for key, value in vars(record).items():
            if key in _STANDARD or key.startswith("_"):
                continue
            entry[key] = "[redacted]" if key.lower() in SENSITIVE_KEYS else value
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        entry["message"] = scrub(entry["message"])
        return json.dumps(entry, default=str, ensure_ascii=False)
