"""A small lake with returns and cancellations, for the readers' tests (report, menu, terminal dashboard, web
page): Bronze's sales and corrections tables written directly (as Silver's own tests do), then the real Silver
job, twice (the sales, then the corrections: two runs to travel between).

Written directly rather than through the Bronze writer because two corrections carry what the contract
refuses (ESC sequences in r3's motif and in r4's retour_id, besides markup and Markdown pipes): the readers
must show even that as text. Written through delta-rs (``tests.support.delta_rs``): the readers and Silver's
job read these tables; how Spark writes them is not what these tests are about. The corrections table itself
is created, empty, by Silver's first run, as without any correction.

The readers only read the lake: the tests share one (the ``corrections_lake`` fixture), built once per run.

What Silver makes of it (``EXPECTED``): s1 (2 units, 100.00) partly returned by r1 (1 unit, 40.00); s2 (50.00)
cancelled by r2; s3 (1 unit, 30.00) untouched, r4 (5 units of it, ``HOSTILE_RETOUR_ID``) refused; r5 names s1
with another client: refused; r3 and r6 wait for sales that never came, r3 for long (an orphan at ``NOW`` with
a one-hour timeout).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

from pyspark.sql import SparkSession

from lakehouse.bronze.columns import METRICS_SCHEMA
from lakehouse.bronze.tables import CORRECTIONS_SCHEMA
from lakehouse.platform.config import Config
from lakehouse.platform.paths import Paths
from lakehouse.silver.job import run_silver
from tests.conftest import make_config, write_config
from tests.support.delta_rs import write_delta
from tests.unit.test_silver_transforms import RULES

SALES = ("vente_id STRING, client_id STRING, produit_id STRING, produit_nom STRING, categorie STRING, "
         "event_ts TIMESTAMP, jour DATE, quantite INT, montant DECIMAL(14,2), client_nom STRING, pays STRING, "
         "segment STRING, is_late BOOLEAN, ingestion_ts TIMESTAMP, kafka_partition INT, kafka_offset BIGINT")
D1, D2 = dt.date(2026, 11, 25), dt.date(2026, 11, 26)
T0 = dt.datetime(2026, 11, 26, 10, 0)  # when Bronze received the sales (naive: the session's UTC)
NOW = T0 + dt.timedelta(hours=2)  # the readers' "now": r3 waited 1 h 59 min, r6 30 min
ORPHAN_TIMEOUT_S = 3600.0
HOSTILE_RETOUR_ID = "[x](javascript:alert(1))|<b>R4</b>\x1b]0;T\x07"
HOSTILE_MOTIF = "<img src=x onerror=alert(1)> | **abîmé** \x1b[2J\x1b[31m# H1"


def _sale(vente_id: str, client: str, nom: str, pays: str, segment: str, produit: tuple[str, str, str], day: dt.date,
          quantite: int, montant: str, offset: int) -> tuple:
    return (vente_id, client, *produit, dt.datetime(day.year, day.month, day.day, 9), day, quantite, Decimal(montant),
            nom, pays, segment, False, T0, 0, offset)


LAMPE, CHAISE = ("P1", "Lampe", "Maison"), ("P2", "Chaise", "Mobilier")
SALE_ROWS = [
    _sale("s1", "C1", "Alice", "France", "B2C", LAMPE, D1, 2, "100.00", 0),
    _sale("s2", "C2", "Bob", "Belgique", "B2B", CHAISE, D1, 1, "50.00", 1),
    _sale("s3", "C1", "Alice", "France", "B2C", CHAISE, D2, 1, "30.00", 2),
]


def _correction(retour_id: str, kind: str, vente_id: str, client: str, quantite: int | None, montant: str | None,
                motif: str | None, offset: int, received: dt.datetime) -> dict:
    row = dict.fromkeys(CORRECTIONS_SCHEMA.names)
    at = dt.datetime(D2.year, D2.month, D2.day, 12)
    row.update(retour_id=retour_id, type_evenement=kind, vente_id=vente_id, client_id=client, event_ts=at, jour=D2,
               quantite=quantite, montant=None if montant is None else Decimal(montant), motif=motif,
               is_late=False, timestamp_naif=False, kafka_topic="ventes", kafka_partition=1, kafka_offset=offset,
               ingestion_ts=received, bronze_batch_id=1)
    return row


CORRECTION_ROWS = [
    _correction("r1", "retour", "s1", "C1", 1, "40.00", "défectueux", 0, T0 + dt.timedelta(minutes=1)),
    _correction("r2", "annulation", "s2", "C2", None, None, "changement d'avis", 1, T0 + dt.timedelta(minutes=1)),
    _correction("r3", "retour", "s9", "C3", 1, "5.00", HOSTILE_MOTIF, 2, T0 + dt.timedelta(minutes=1)),
    _correction(HOSTILE_RETOUR_ID, "retour", "s3", "C1", 5, "1.00", "a | b", 3, T0 + dt.timedelta(minutes=1)),
    _correction("r5", "retour", "s1", "C9", 1, "1.00", None, 4, T0 + dt.timedelta(minutes=1)),
    _correction("r6", "retour", "s8", "C4", 1, "2.00", None, 5, T0 + dt.timedelta(minutes=90)),
]

# What Silver holds after both runs.
EXPECTED = {"sales": 3, "gross": Decimal("180.00"), "refunds": Decimal("40.00"), "cancelled": Decimal("50.00"),
            "net": Decimal("90.00"), "returns": 1, "cancellations": 1, "units_sold": 4, "units_returned": 1,
            "waiting": 2, "orphans": 1, "rejected": 2}


def lake_config(root: Path) -> Config:
    """The configuration of the lake under ``root`` (orphan timeout: one hour)."""
    return make_config(root / "data", analytics__orphan_timeout="1 hour")


def lake_files(root: Path) -> tuple[Paths, Path]:
    """The lake under ``root``, once built: its paths and its configuration file."""
    return Paths.from_config(lake_config(root)), root / "config.ini"


def build_corrections_lake(spark: SparkSession, root: Path) -> tuple[Paths, Path]:
    """Build the lake under ``root`` and a configuration file for it; ``lake_files(root)``."""
    cfg = lake_config(root)
    paths = Paths.from_config(cfg)
    write_delta(paths.bronze, SALE_ROWS, SALES, partition_by="jour")
    write_delta(paths.bronze_metrics, [], METRICS_SCHEMA)
    run_silver(spark, RULES, paths)  # run 0: the sales
    write_delta(paths.corrections, CORRECTION_ROWS, CORRECTIONS_SCHEMA, partition_by="jour")
    run_silver(spark, RULES, paths)  # run 1: the corrections
    write_config(root / "config.ini", cfg, analytics={"orphan_timeout": "1 hour"})
    return lake_files(root)
