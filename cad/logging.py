"""Structured logs: one JSON object per line.

Never pass caller identity (089 or 911) or secrets in `extra`: the formatter drops known-sensitive keys
as a last line of defence, but the rule is not to log them at all.
"""

import json
import logging
from datetime import UTC, datetime

SENSITIVE_KEYS = frozenset({"caller_name", "callback_number", "password", "token", "secret", "authorization"})
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in _STANDARD or key.startswith("_"):
                continue
            entry[key] = "[redacted]" if key.lower() in SENSITIVE_KEYS else value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)
