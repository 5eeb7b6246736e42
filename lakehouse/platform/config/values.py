"""The value types of the settings and the parsers that read them from text.

``Duration`` (``10 minutes``), ``Secret`` (a value never shown), one parser per type, and the checks of
values whose form a type alone does not say (broker lists, an s3a:// lake, time zones). A parser raises
``ValueError`` saying what is allowed; the loader turns it into a ``ConfigError`` naming the setting.
"""

from __future__ import annotations

import math
import os
import re
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


class ConfigError(ValueError):
    """A configuration value (file, environment or flag) is missing, unknown or invalid."""


# --- durations -------------------------------------------------------------------------------------

_DURATION_UNITS = {
    "ms": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$")


@dataclass(frozen=True)
class Duration:
    """A length of time as written by the user (``10 minutes``), kept in seconds."""

    seconds: float
    text: str

    def spark(self) -> str:
        """The form Spark's watermark and trigger APIs accept, e.g. ``600 seconds``."""
        if self.seconds == int(self.seconds):
            return f"{int(self.seconds)} seconds"
        return f"{int(round(self.seconds * 1000))} milliseconds"

    def __str__(self) -> str:
        return self.text


def parse_duration(text: str) -> Duration:
    """Parse ``<number> <unit>`` (ms, s, min, h, d and their long forms) into a ``Duration``."""
    match = _DURATION_RE.match(text)
    if not match or match.group(2).lower() not in _DURATION_UNITS:
        units = "ms, s, min, h, d (or milliseconds, seconds, minutes, hours, days)"
        raise ValueError(f"expected a duration like '10 minutes' or '500 ms' with a unit among {units}")
    return Duration(float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()], text.strip())


# --- secrets ---------------------------------------------------------------------------------------

# Every secret value the loader has read, so that log handlers and captured outputs can mask it.
_SECRET_VALUES: set[str] = set()


class Secret:
    """A value that must not be shown: its ``repr`` and ``str`` are masked; ``reveal()`` gives it to the
    one client that needs it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value
        remember_secret(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def remember_secret(value: str) -> None:
    """Add ``value`` to the values ``redact`` masks (the logging filter of the entry points uses it).
    Values shorter than 4 characters are not masked: they would mangle every line and reveal nothing."""
    if len(value) >= 4:
        _SECRET_VALUES.add(value)


def redact(text: str) -> str:
    """``text`` with every secret read so far replaced by ``***``."""
    for value in sorted(_SECRET_VALUES, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


# --- parsers of the plain types --------------------------------------------------------------------

def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"true", "yes", "on", "1"}:
        return True
    if lowered in {"false", "no", "off", "0"}:
        return False
    raise ValueError("expected true or false")


def parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError as e:
        raise ValueError("expected a whole number") from e


def parse_float(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError as e:
        raise ValueError("expected a number") from e
    if not math.isfinite(value):  # float() takes nan and inf; no setting can use them
        raise ValueError("expected a finite number")
    return value


def parse_str(text: str) -> str:
    return text.strip()


# The parser of each value type a setting may have.
PARSERS: dict[type, Callable[[str], Any]] = {
    bool: parse_bool, int: parse_int, float: parse_float, str: parse_str, Duration: parse_duration,
    # A password is taken exactly as given: spaces at either end are part of it.
    Secret: Secret,
}


# --- checks of particular forms --------------------------------------------------------------------

HOSTPORTS = r"[A-Za-z0-9_.\-\[\]:]+:\d{1,5}(,[A-Za-z0-9_.\-\[\]:]+:\d{1,5})*"
# What SparkSession.builder.master and spark-submit --master accept.
SPARK_MASTER = (r"local(\[(\*|[1-9]\d*)(,\s*[1-9]\d*)?\])?|local-cluster\[\d+,\s*\d+,\s*\d+\]"
                r"|spark://[^\s:/]+:\d{1,5}(,[^\s:/]+:\d{1,5})*|yarn|k8s://\S+")


def check_ports(value: str) -> None:
    """Every port of a ``host:port,...`` list is between 1 and 65535."""
    for address in value.split(","):
        port = int(address.rsplit(":", 1)[1])
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port} of {address} is not between 1 and 65535")


def check_lake(value: str) -> None:
    """``[paths] lake``: a folder, or ``s3a://bucket[/prefix]`` (bucket names as S3 allows them)."""
    if "://" not in value:
        return
    if not value.startswith("s3a://"):
        raise ValueError("expected a folder or an s3a://bucket/prefix URI (the S3A connector's scheme)")
    bucket, _, prefix = value[len("s3a://"):].partition("/")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
        raise ValueError(f"bucket {bucket!r}: expected 3-63 lower-case letters, digits, dots or hyphens")
    parts = prefix.strip("/").split("/") if prefix.strip("/") else []
    if any(part in ("", ".", "..") or not re.fullmatch(r"[A-Za-z0-9._\-]+", part) for part in parts):
        raise ValueError("the prefix after the bucket: expected folder names of letters, digits, '.', '_', '-'")


def check_timezone(value: str) -> None:
    """A zone Spark takes: a region id (Europe/Paris, UTC) or a fixed offset (+01:00)."""
    # Anything else would fail only when the first timestamp is read.
    if re.fullmatch(r"[+-](0\d|1[0-8]):[0-5]\d", value):
        return
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError("expected a time zone id such as UTC or Europe/Paris, or an offset such as "
                         "+01:00") from e


def check_naive_timezone(value: str) -> None:
    """``local``, ``reject``, or a zone id Python knows."""
    if value in ("local", "reject"):
        return
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError("expected local, reject, or a time zone id such as Europe/Paris or UTC") from e


def resolve_path(value: str, base_dir: Path) -> Path:
    """A path setting as an absolute path: ``~`` expanded, a relative path read from ``base_dir``."""
    path = Path(os.path.expanduser(value.strip()))
    return path if path.is_absolute() else (base_dir / path).resolve()
