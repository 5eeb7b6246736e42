"""The sale event contract, declared once: field names, required fields and the Spark read schema."""

from __future__ import annotations

from pyspark.sql import types as T

CONTRACT_VERSION = 1

# Required fields of every sale event (one JSON object per Kafka message).
REQUIRED_FIELDS: tuple[str, ...] = (
    "vente_id", "client_id", "produit_id", "timestamp", "quantite", "montant",
    "client_nom", "produit_nom", "categorie", "pays", "segment",
)
# Optional fields this project's producer adds; consumers ignore any other field.
OPTIONAL_FIELDS: tuple[str, ...] = ("prix_unitaire", "ville", "canal", "devise", "contract_version")

SEGMENT_ALIASES = {"B2C": "B2C", "B2B": "B2B", "Particulier": "B2C", "Entreprise": "B2B"}

# Spark reads every field as a string first: ids may be integers or strings, and a number sent as a
# string must be told apart from a valid number by the parser, not silently coerced to null.
RAW_EVENT_SCHEMA = T.StructType(
    [T.StructField(name, T.StringType(), True) for name in REQUIRED_FIELDS + OPTIONAL_FIELDS]
)
