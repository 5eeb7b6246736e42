"""The sale event contract, declared once.

One JSON object per Kafka message, UTF-8. ``FIELDS`` says each field's kind and whether it is
required; the Python validator below (used by the producer's tests) and the Spark read schema (used by
the Bronze parser) are both derived from it, and both name violations with the same ``REASONS``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pyspark.sql import types as T

CONTRACT_VERSION = 1


@dataclass(frozen=True)
class Field:
    """One field of a sale event: ``kind`` is id, text, int, number, timestamp or segment."""

    name: str
    kind: str
    required: bool


FIELDS: tuple[Field, ...] = (
    Field("vente_id", "id", True),
    Field("client_id", "id", True),
    Field("produit_id", "id", True),
    Field("timestamp", "timestamp", True),
    Field("quantite", "int", True),
    Field("montant", "number", True),
    Field("client_nom", "text", True),
    Field("produit_nom", "text", True),
    Field("categorie", "text", True),
    Field("pays", "text", True),
    Field("segment", "segment", True),
    Field("prix_unitaire", "number", False),
    Field("ville", "text", False),
    Field("canal", "text", False),
    Field("devise", "text", False),
    Field("contract_version", "int", False),
)
REQUIRED_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.required)
OPTIONAL_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if not f.required)

SEGMENT_ALIASES = {"B2C": "B2C", "B2B": "B2B", "Particulier": "B2C", "Entreprise": "B2B"}
CANALS = ("web", "magasin", "mobile")

# Why a record breaks the contract. A missing or mistyped field is reported as
# "missing_field:<name>" / "wrong_type:<name>".
REASONS = ("empty", "oversized", "non_utf8", "not_json", "not_object", "missing_field", "wrong_type",
           "bad_quantity", "negative_amount", "unknown_segment", "bad_timestamp")

# Spark reads every field as a string first: ids may be integers or strings, and the parser must tell
# a number sent as text apart from a number instead of silently turning it into null.
RAW_EVENT_SCHEMA = T.StructType([T.StructField(f.name, T.StringType(), True) for f in FIELDS])


def parse_timestamp(text: str) -> datetime:
    """Parse an ISO-8601 timestamp, with or without an offset (naive ones are local to the reader)."""
    if not isinstance(text, str) or not text or not text[0].isdigit():
        raise ValueError(f"not an ISO-8601 timestamp: {text!r}")
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _kind_ok(kind: str, value: Any) -> bool:
    if kind == "id":
        return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and value != "")
    if kind in ("text", "segment", "timestamp"):
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value))
    raise ValueError(f"unknown field kind {kind!r}")


def violations(value: bytes | None, max_bytes: int) -> list[str]:
    """Every reason why a Kafka value breaks the contract; an empty list means it is a valid sale."""
    if value is None or len(value) == 0:
        return ["empty"]
    if len(value) > max_bytes:
        return ["oversized"]
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return ["non_utf8"]
    try:
        event = json.loads(text)
    except ValueError:
        return ["not_json"]
    if not isinstance(event, dict):
        return ["not_object"]
    reasons = []
    for field in FIELDS:
        if field.name not in event or event[field.name] is None:
            if field.required:
                reasons.append(f"missing_field:{field.name}")
        elif not _kind_ok(field.kind, event[field.name]):
            reasons.append(f"wrong_type:{field.name}")
    if "wrong_type:quantite" not in reasons and isinstance(event.get("quantite"), int) \
            and not isinstance(event.get("quantite"), bool) and event["quantite"] < 1:
        reasons.append("bad_quantity")
    if "wrong_type:montant" not in reasons and _kind_ok("number", event.get("montant")) \
            and event["montant"] < 0:
        reasons.append("negative_amount")
    if isinstance(event.get("segment"), str) and event["segment"] not in SEGMENT_ALIASES:
        reasons.append("unknown_segment")
    if isinstance(event.get("timestamp"), str):
        try:
            parse_timestamp(event["timestamp"])
        except ValueError:
            reasons.append("bad_timestamp")
    return reasons
