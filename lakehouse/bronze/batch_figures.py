"""A Bronze batch's figures: what the writer counts while deciding a batch, what its last commit's tag carries
(``commit_tags``), and what the metrics table's row of the batch is made of.

The tag holds them as a JSON object with these field names, in this order; a restart reads them back from
the tags of batches whose metrics row had not reached the metrics table (``recovery``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from typing import Any


@dataclass(frozen=True, kw_only=True)
class BatchFigures:
    """One batch's figures: its records per outcome, its event times and its Kafka timestamps."""

    started_ms: int  # when the writer received the batch (ms since the epoch)
    input_rows: int
    bronze_rows: int  # sales kept
    correction_rows: int = 0  # returns and cancellations kept (absent from tags written before they existed)
    quarantined_rows: int  # broken records and conflicting ids
    duplicate_rows: int
    conflicting_rows: int
    late_rows: int
    max_event_us: int | None = None  # latest event time kept in this batch
    watermark_us: int | None = None  # the watermark the batch was judged against
    kafka_p50_ms: int | None = None  # median Kafka timestamp of the batch's records
    kafka_min_ms: int | None = None  # oldest Kafka timestamp of the batch's records
    kafka_lag: int | None = None  # records behind the topic's end, at the previous batch's progress

    def to_tag(self) -> dict[str, Any]:
        """The figures as the commit tag's JSON object holds them."""
        return asdict(self)

    @classmethod
    def from_tag(cls, data: dict[str, Any]) -> BatchFigures:
        """The figures of a commit tag's JSON object (names it does not know are passed over)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def utc(micros: int | None) -> datetime | None:
    """A time for the metrics table; the contract bounds event times, so this never leaves the calendar."""
    return None if micros is None else datetime.fromtimestamp(micros / 1_000_000, tz=timezone.utc)


def metrics_row(query_id: str, batch_id: int, figures: BatchFigures, committed_ms: int) -> dict[str, Any]:
    """The metrics table's row of a batch, from its figures and the time its last commit was made."""
    duration_ms = max(0, committed_ms - figures.started_ms)
    p50, oldest = figures.kafka_p50_ms, figures.kafka_min_ms
    return {
        "query_id": query_id, "batch_id": batch_id, "committed_at": utc(committed_ms * 1000),
        "input_rows": figures.input_rows, "bronze_rows": figures.bronze_rows,
        "quarantined_rows": figures.quarantined_rows, "duplicate_rows": figures.duplicate_rows,
        "conflicting_rows": figures.conflicting_rows, "late_rows": figures.late_rows,
        "max_event_ts": utc(figures.max_event_us), "watermark": utc(figures.watermark_us),
        "duration_ms": duration_ms,
        "rows_per_s": figures.input_rows / (duration_ms / 1000) if duration_ms else None,
        "latency_p50_ms": None if p50 is None else committed_ms - p50,
        "latency_max_ms": None if oldest is None else committed_ms - oldest,
        "kafka_lag": figures.kafka_lag, "correction_rows": figures.correction_rows,
    }
