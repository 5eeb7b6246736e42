"""The sale event contract, declared once, with its Python verdict.

A Kafka value is a valid event when it is one flat JSON object in UTF-8 (nothing before or after it, no
duplicate keys, no nested object or array, no NaN/Infinity) whose fields have the kinds of ``FIELDS``
and values that every later stage can hold: see docs/CONTRACT.md. Its
``type_evenement`` says what it is: a sale (``vente``, also when the field is absent), a return
(``retour``) or a cancellation (``annulation``); each type has its own fields, and a field that is not
part of the record's type is ignored, as unknown fields are.

``violations`` gives the verdict in Python (the producer's tests, the corpus tests); the Bronze stream
gives the same verdict with Spark expressions (``lakehouse.bronze.contract_check``). Both are built
from the same steps and the same patterns below, in the same order, so that they agree record by
record; a test feeds a corpus of hostile records to both and compares every reason.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from lakehouse.platform.config import Config

CONTRACT_VERSION = 1


# The event types (``type_evenement``): a sale, a return of some of its units, its cancellation. A record
# without the field, or with a value that is not one of these (refused as unknown_event_type), is judged
# as a sale.
EVENT_TYPES = ("vente", "retour", "annulation")
VENTE, RETOUR, ANNULATION = EVENT_TYPES
DEFAULT_EVENT_TYPE = VENTE
CORRECTION_TYPES = (RETOUR, ANNULATION)
FIELD_KINDS = ("event_type", "id", "text", "int", "money", "timestamp", "segment", "version")


@dataclass(frozen=True)
class Field:
    """One field of an event: ``kind`` is one of ``FIELD_KINDS``; ``types`` are the event types it is part
    of, ``required_for`` those of them that must carry it (not null)."""

    name: str
    kind: str
    types: tuple[str, ...]
    required_for: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in FIELD_KINDS:
            raise ValueError(f"field {self.name}: unknown kind {self.kind!r}, expected one of {FIELD_KINDS}")
        if not self.types or not set(self.types) <= set(EVENT_TYPES):
            raise ValueError(f"field {self.name}: types {self.types!r} must be some of {EVENT_TYPES}")
        if not set(self.required_for) <= set(self.types):
            raise ValueError(f"field {self.name}: required for {self.required_for!r}, not all in {self.types!r}")

    def is_part_of(self, event_type: str) -> bool:
        return event_type in self.types

    def is_required(self, event_type: str) -> bool:
        return event_type in self.required_for


_ALL, _SALE, _SALE_AND_RETURN = EVENT_TYPES, (VENTE,), (VENTE, RETOUR)
# The order of the reasons. A sale's fields keep their order of contract version 1.
FIELDS: tuple[Field, ...] = (
    Field("type_evenement", "event_type", _ALL),
    Field("vente_id", "id", _ALL, _ALL),
    Field("retour_id", "id", CORRECTION_TYPES, CORRECTION_TYPES),
    Field("client_id", "id", _ALL, _ALL),
    Field("produit_id", "id", _SALE, _SALE),
    Field("timestamp", "timestamp", _ALL, _ALL),
    Field("quantite", "int", _SALE_AND_RETURN, _SALE_AND_RETURN),
    Field("montant", "money", _SALE_AND_RETURN, _SALE_AND_RETURN),
    Field("client_nom", "text", _SALE, _SALE),
    Field("produit_nom", "text", _SALE, _SALE),
    Field("categorie", "text", _SALE, _SALE),
    Field("pays", "text", _SALE, _SALE),
    Field("segment", "segment", _SALE, _SALE),
    Field("prix_unitaire", "money", _SALE),
    Field("ville", "text", _SALE),
    Field("canal", "text", _SALE),
    Field("devise", "text", _SALE),
    Field("motif", "text", CORRECTION_TYPES),
    Field("contract_version", "version", _ALL),
)


def fields_of(event_type: str) -> tuple[Field, ...]:
    """The fields that are part of an event of this type, in ``FIELDS`` order."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}, expected one of {EVENT_TYPES}")
    return tuple(f for f in FIELDS if f.is_part_of(event_type))


def required_fields(event_type: str = VENTE) -> tuple[str, ...]:
    """The names of the fields an event of this type must carry, in ``FIELDS`` order."""
    return tuple(f.name for f in fields_of(event_type) if f.is_required(event_type))


def optional_fields(event_type: str = VENTE) -> tuple[str, ...]:
    """The names of the fields an event of this type may carry, in ``FIELDS`` order."""
    return tuple(f.name for f in fields_of(event_type) if not f.is_required(event_type))


def event_type_of(event: Mapping[str, Any]) -> str:
    """The type a decoded record is judged as: its ``type_evenement`` when that is one of ``EVENT_TYPES``,
    else a sale (the field absent or null, or a value refused as unknown_event_type or wrong_type)."""
    value = event.get("type_evenement")
    return value if isinstance(value, str) and value in EVENT_TYPES else DEFAULT_EVENT_TYPE


# For a sale (what the producer sends and other code imports).
REQUIRED_FIELDS: tuple[str, ...] = required_fields(VENTE)
OPTIONAL_FIELDS: tuple[str, ...] = optional_fields(VENTE)

SEGMENT_ALIASES = {"B2C": "B2C", "B2B": "B2B", "Particulier": "B2C", "Entreprise": "B2B"}
CANALS = ("web", "magasin", "mobile")

# Limits that are part of the contract (not settings): what Bronze's columns and every reader hold.
MAX_ID_CHARS = 64
MAX_TEXT_CHARS = 200
MAX_NUMBER_CHARS = 100
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
MONEY_MAX = Decimal("999999999999.99")  # decimal(14,2)
MONEY_CENT = Decimal("0.01")
# A JSON number Spark keeps exactly (as a decimal) has at most 38 digits and 38 decimals; past that, or
# written with an exponent, it becomes a double and cannot be an exact amount.
EXACT_DIGITS = 38

# Record-level reasons, in the order they are checked; field-level reasons follow in FIELDS order.
RECORD_REASONS = ("empty", "oversized", "non_utf8", "bad_number", "not_json", "not_object", "nested_value",
                  "trailing_data", "duplicate_key")
FIELD_REASONS = ("missing_field", "wrong_type", "unknown_event_type", "bad_text", "bad_quantity", "bad_amount",
                 "negative_amount", "unknown_segment", "bad_timestamp", "future_event", "stale_event",
                 "unsupported_version")
# Decided by the Bronze writer against the sales it has kept (not by the contract).
WRITER_REASONS = ("conflicting_id",)
REASONS = RECORD_REASONS + FIELD_REASONS + WRITER_REASONS


@dataclass(frozen=True)
class ContractLimits:
    """The configurable bounds of the contract (``[streaming]`` settings), in plain units."""

    max_event_bytes: int = 65536
    max_quantite: int = 100_000
    max_future_skew_us: int = 5 * 60 * 1_000_000
    max_event_age_us: int = 365 * 86400 * 1_000_000
    # The IANA zone a timestamp without offset is read in, or None to refuse it (bad_timestamp).
    naive_zone: str | None = None

    @classmethod
    def from_config(cls, cfg: Config) -> "ContractLimits":
        s = cfg.streaming
        return cls(max_event_bytes=s.max_event_bytes, max_quantite=s.max_quantite,
                   max_future_skew_us=int(s.max_future_skew.seconds * 1_000_000),
                   max_event_age_us=int(s.max_event_age.seconds * 1_000_000),
                   naive_zone=None if s.naive_timezone == NAIVE_REJECT else s.naive_timezone)


# --- the patterns both engines use -------------------------------------------------------------------
# Each is written once without its end anchor; ``END`` is put in by each engine: Python's ``\Z`` and
# Java's ``\z`` both mean "end of text" (``$`` would also match before a final line break, \u2028 in Java).
END = "{END}"
WS = "[ \t\n\r]"  # JSON's whitespace, nothing else

# Step 1, "blanking": every backslash pair and escaped quote becomes "_", then every string token "s".
# What is left shows the value's structure: braces, brackets, numbers, literals, commas, colons.
ESCAPED_BACKSLASH, ESCAPED_QUOTE, ESCAPE_MARK = "\\\\", '\\"', "_"
STRING_TOKEN, STRING_MARK = '"[^"]*"', "s"
LONG_NUMBER = "[-+.0-9eE]{%d,}" % (MAX_NUMBER_CHARS + 1)
FLAT_OBJECT = "^" + WS + r"*\{[^{}\[\]]*\}" + WS + "*" + END
NESTED_OBJECT = "^" + WS + r"*\{[^{}\[\]]*[{\[]"
CLOSED_OBJECT = "^" + WS + r"*\{[^{}\[\]]*\}"
STARTS_OBJECT = "^" + WS + r"*\{"
STARTS_ARRAY = "^" + WS + r"*\["
# Anything else is "not_object" only when the whole text is one JSON scalar (a blanked string, a number,
# a literal) between JSON whitespace, and "not_json" otherwise. Judged on the shape, not left to the
# parser: Python's decoder stops after the first value while Jackson refuses some text glued to a root
# scalar ("1x", "1}", "truex") and ignores other ("1 x", '"a"x').
JSON_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"
SCALAR = "^" + WS + "*(?:" + STRING_MARK + "|" + JSON_NUMBER + "|true|false|null)" + WS + "*" + END
# Field values.
# Control characters, and the bidirectional controls (Unicode category Cf) that reorder how a line is
# displayed: a name holding U+202E shows reversed and moves what follows it on a terminal line. Other format
# characters (zero-width U+200B-U+200D, U+2060, U+FEFF, the soft hyphen) are kept and shown visibly by the
# readers (lakehouse.serve.safe_text).
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
CONTROL_CHAR = "[\x00-\x1f\x7f-\x9f" + BIDI_CONTROLS + "]"
LOCAL_DATE_TIME = "^(?!0000)[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,6})?"
TIMESTAMP = LOCAL_DATE_TIME + "(?:Z|[+-](?:0[0-9]|1[0-3]):[0-5][0-9]|[+-]14:00)" + END
# The same without an offset (what Python's datetime.now().isoformat() writes): accepted only with
# [streaming] naive_timezone, read in that zone.
NAIVE_TIMESTAMP = LOCAL_DATE_TIME + END
NAIVE_REJECT = "reject"


def python_pattern(pattern: str) -> re.Pattern:
    return re.compile(pattern.replace(END, r"\Z"))


def java_pattern(pattern: str) -> str:
    return pattern.replace(END, r"\z")


(_LONG_NUMBER, _FLAT, _NESTED, _CLOSED, _STARTS_OBJECT, _STARTS_ARRAY, _SCALAR, _STRING, _CONTROL, _TIMESTAMP,
 _NAIVE_TIMESTAMP) = (python_pattern(p) for p in (LONG_NUMBER, FLAT_OBJECT, NESTED_OBJECT, CLOSED_OBJECT,
                                                  STARTS_OBJECT, STARTS_ARRAY, SCALAR, STRING_TOKEN, CONTROL_CHAR,
                                                  TIMESTAMP, NAIVE_TIMESTAMP))


def blank(text: str) -> str:
    """The value's structure with every string replaced by ``s`` (step 1 of both engines)."""
    normalized = text.replace(ESCAPED_BACKSLASH, ESCAPE_MARK).replace(ESCAPED_QUOTE, ESCAPE_MARK)
    return _STRING.sub(STRING_MARK, normalized)


# --- JSON decoding that keeps numbers as written ------------------------------------------------------

class _Number:
    """A JSON number as written; ``is_int`` for integer literals (no fraction, no exponent)."""

    __slots__ = ("text", "is_int")

    def __init__(self, text: str, is_int: bool):
        self.text, self.is_int = text, is_int

    def int64(self) -> int | None:
        """The value when it is an integer literal within 64 bits (what Spark keeps as an integer)."""
        if not self.is_int:
            return None
        value = int(self.text)
        return value if INT64_MIN <= value <= INT64_MAX else None

    def exact(self) -> Decimal | None:
        """The exact value when Spark keeps it exactly (integer or decimal notation within 38 digits),
        else None (Spark makes it a double)."""
        whole = self.int64()
        if whole is not None:
            return Decimal(whole)
        if "e" in self.text or "E" in self.text:
            return None
        value = Decimal(self.text)
        _, digits, exponent = value.as_tuple()
        # A JSON number is finite: the exponent is an int ('n', 'N', 'F' are NaN's and infinity's).
        if not isinstance(exponent, int) or len(digits) > EXACT_DIGITS or -exponent > EXACT_DIGITS:
            return None
        return value


class _JsonError(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _JsonError(f"{name} is not JSON")


def _decode(text: str, start: int) -> tuple[Any, bool]:
    """The first JSON value of ``text`` from ``start`` and whether an object in it repeats a key.
    Raises ``_JsonError`` when it is not JSON (including a half surrogate pair, which Spark refuses)."""
    repeated = []

    def pairs(items: list[tuple[str, Any]]) -> dict:
        keys = [k for k, _ in items]
        if len(set(keys)) != len(keys):
            repeated.append(True)
        return dict(items)

    decoder = json.JSONDecoder(object_pairs_hook=pairs, parse_constant=_reject_constant,
                               parse_int=lambda s: _Number(s, True), parse_float=lambda s: _Number(s, False))
    try:
        value, _ = decoder.raw_decode(text, start)
    except ValueError as e:
        raise _JsonError(str(e)) from e
    strings = [value] if isinstance(value, str) else []
    if isinstance(value, dict):
        strings = [*value, *(v for v in value.values() if isinstance(v, str))]
    if any(_has_surrogate(s) for s in strings):
        raise _JsonError("half of a surrogate pair")
    return value, bool(repeated)


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


# --- the verdict ------------------------------------------------------------------------------------

def _record_reason(value: bytes | None, max_bytes: int) -> tuple[str, None] | tuple[None, dict[str, Any]]:
    """The record-level reason, or (None, the decoded object) for a flat object with unique keys."""
    if value is None or len(value) == 0:
        return "empty", None
    if len(value) > max_bytes:
        return "oversized", None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "non_utf8", None
    shape = blank(text)
    if _LONG_NUMBER.search(shape):
        return "bad_number", None
    start = len(text) - len(text.lstrip(" \t\n\r"))
    if _FLAT.search(shape):
        try:
            event, repeated = _decode(text, start)
        except _JsonError:
            return "not_json", None
        return ("duplicate_key", None) if repeated else (None, event)
    if _STARTS_OBJECT.search(shape):
        if _NESTED.search(shape):
            return "nested_value", None
        if _CLOSED.search(shape):
            try:
                _decode(text, start)
            except _JsonError:
                return "not_json", None
            return "trailing_data", None
        return "not_json", None
    if _STARTS_ARRAY.search(shape):
        return "not_object", None
    if not _SCALAR.search(shape):
        return "not_json", None
    try:
        _decode(text, start)
    except _JsonError:
        return "not_json", None
    return "not_object", None


def is_naive_timestamp(text: str) -> bool:
    """Whether ``text`` is a contract date-time without its offset (read in ``naive_zone`` when allowed)."""
    return bool(_NAIVE_TIMESTAMP.search(text))


def timestamp_micros(text: str, naive_zone: str | None = None) -> int | None:
    """Microseconds since the epoch of a contract timestamp, None when it is not one (any year 1-9999,
    computed without leaving the calendar even when the offset moves it past year 1 or 9999).

    With ``naive_zone`` (an IANA zone), a date-time without offset is read as that zone's wall-clock time;
    a time the clocks skip (spring forward) or show twice (fall back) takes the offset in force just before
    the change, as Java's ``LocalDateTime.atZone`` does for Spark."""
    if naive_zone is not None and _NAIVE_TIMESTAMP.search(text):
        return _naive_micros(text, naive_zone)
    if not _TIMESTAMP.search(text):
        return None
    try:
        day = date(int(text[0:4]), int(text[5:7]), int(text[8:10]))
    except ValueError:
        return None
    fraction, zone = text[19:], ""
    if fraction.endswith("Z"):
        fraction, offset_us = fraction[:-1], 0
    else:
        fraction, zone = fraction[:-6], fraction[-6:]
        sign = -1 if zone[0] == "-" else 1
        offset_us = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60) * 1_000_000
    micros = int(fraction[1:].ljust(6, "0")) if fraction else 0
    seconds = int(text[11:13]) * 3600 + int(text[14:16]) * 60 + int(text[17:19])
    days = day.toordinal() - _EPOCH_ORDINAL
    return (days * 86400 + seconds) * 1_000_000 + micros - offset_us


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _naive_micros(text: str, zone: str) -> int | None:
    try:
        wall = datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]),
                        int(text[17:19]), int(text[20:].ljust(6, "0")) if len(text) > 19 else 0)
    except ValueError:
        return None
    offset = ZoneInfo(zone).utcoffset(wall)  # fold=0: the offset in force before a change of the clocks
    if offset is None:  # a ZoneInfo gives every wall time an offset; tzinfo's interface allows None
        return None
    days = wall.date().toordinal() - _EPOCH_ORDINAL
    seconds = wall.hour * 3600 + wall.minute * 60 + wall.second
    return (days * 86400 + seconds) * 1_000_000 + wall.microsecond - (offset.days * 86400 + offset.seconds) * 1_000_000


def _kind_ok(kind: str, value: Any) -> bool:
    if kind == "event_type":
        return isinstance(value, str)
    if kind == "id":
        return isinstance(value, str) or (isinstance(value, _Number) and value.int64() is not None)
    if kind in ("text", "segment", "timestamp"):
        return isinstance(value, str)
    if kind in ("int", "version"):
        return isinstance(value, _Number) and value.int64() is not None
    if kind == "money":
        return isinstance(value, _Number)
    raise ValueError(f"unknown field kind {kind!r}")


def _value_reason(f: Field, value: Any, required: bool, limits: ContractLimits, reference_us: int) -> str | None:
    """Why a value of the right kind does not fit its column, or None (``required``: for the record's type)."""
    if f.kind == "event_type":
        if value not in EVENT_TYPES:
            return "unknown_event_type"
    elif f.kind in ("id", "text") and isinstance(value, str):
        longest = MAX_ID_CHARS if f.kind == "id" else MAX_TEXT_CHARS
        if ((required or f.kind == "id") and value == "") or len(value) > longest or _CONTROL.search(value):
            return f"bad_text:{f.name}"
    elif f.kind == "int":
        if not 1 <= value.int64() <= limits.max_quantite:
            return "bad_quantity"
    elif f.kind == "version":
        if not 1 <= value.int64() <= CONTRACT_VERSION:
            return "unsupported_version"
    elif f.kind == "money":
        amount = value.exact()
        if amount is None or abs(amount) > MONEY_MAX or amount != amount.quantize(MONEY_CENT):
            return f"bad_amount:{f.name}"
        if amount < 0:
            return f"negative_amount:{f.name}"
    elif f.kind == "segment":
        if value not in SEGMENT_ALIASES:
            return "unknown_segment"
    elif f.kind == "timestamp":
        event_us = timestamp_micros(value, limits.naive_zone)
        if event_us is None:
            return "bad_timestamp"
        if event_us > reference_us + limits.max_future_skew_us:
            return "future_event"
        if event_us < reference_us - limits.max_event_age_us:
            return "stale_event"
    return None


def reference_time(kafka_us: int | None, now_us: int, limits: ContractLimits) -> int:
    """What an event time is judged against: the record's Kafka timestamp, kept within
    [now - max_event_age, now] because a producer sets it (Kafka accepts year 1 as well as tomorrow)."""
    if kafka_us is None:
        return now_us
    return min(max(kafka_us, now_us - limits.max_event_age_us), now_us)


def violations(value: bytes | None, limits: ContractLimits = ContractLimits(),
               kafka_us: int | None = None, now_us: int | None = None) -> list[str]:
    """Every reason why a Kafka value breaks the contract; an empty list means it is a valid event (a sale,
    a return or a cancellation: see ``event_type_of``).

    ``kafka_us`` is the record's Kafka timestamp and ``now_us`` the time it is read, both microseconds
    since the epoch (default: now); see ``reference_time``.
    """
    checked = _record_reason(value, limits.max_event_bytes)
    if checked[0] is not None:
        return [checked[0]]
    event = checked[1]
    if now_us is None:
        now_us = time.time_ns() // 1000
    reference_us = reference_time(kafka_us, now_us, limits)
    judged_as = event_type_of(event)
    reasons = []
    for f in FIELDS:
        if not f.is_part_of(judged_as):
            continue  # ignored, as an unknown field
        field_value = event.get(f.name)
        required = f.is_required(judged_as)
        if field_value is None:
            if required:
                reasons.append(f"missing_field:{f.name}")
        elif not _kind_ok(f.kind, field_value):
            reasons.append(f"wrong_type:{f.name}")
        else:
            found = _value_reason(f, field_value, required, limits, reference_us)
            if found:
                reasons.append(found)
    return reasons


def parse_timestamp(text: str) -> datetime:
    """A contract timestamp as an aware datetime (``ValueError`` if it is not one)."""
    if timestamp_micros(text) is None:
        raise ValueError(f"not a contract timestamp (ISO-8601 date-time with offset): {text!r}")
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
