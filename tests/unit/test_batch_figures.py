"""A Bronze batch's figures (``bronze.batch_figures``): the commit tag's JSON object they make and are read back
from (tags written by earlier versions included), and the metrics table's row of the batch."""

from __future__ import annotations

import datetime as dt
import json

from lakehouse.bronze.batch_figures import BatchFigures, metrics_row
from lakehouse.bronze.commit_tags import CommitTag

FIGURES = BatchFigures(started_ms=1_000, input_rows=10, bronze_rows=6, correction_rows=1, quarantined_rows=2,
                       duplicate_rows=1, conflicting_rows=1, late_rows=1, max_event_us=5_000_000,
                       watermark_us=4_000_000, kafka_p50_ms=900, kafka_min_ms=800, kafka_lag=None)


def test_the_tag_holds_the_figures_under_their_names_in_their_order() -> None:
    tag = CommitTag("q", 3, 5_000_000, FIGURES.to_tag())
    # The JSON the stream has always written (a restart of an older run reads it, and so does this one).
    assert json.loads(tag.to_json())["figures"] == {
        "started_ms": 1_000, "input_rows": 10, "bronze_rows": 6, "correction_rows": 1, "quarantined_rows": 2,
        "duplicate_rows": 1, "conflicting_rows": 1, "late_rows": 1, "max_event_us": 5_000_000,
        "watermark_us": 4_000_000, "kafka_p50_ms": 900, "kafka_min_ms": 800, "kafka_lag": None}
    assert list(json.loads(tag.to_json())["figures"]) == [
        "started_ms", "input_rows", "bronze_rows", "correction_rows", "quarantined_rows", "duplicate_rows",
        "conflicting_rows", "late_rows", "max_event_us", "watermark_us", "kafka_p50_ms", "kafka_min_ms", "kafka_lag"]
    assert BatchFigures.from_tag(CommitTag.from_json(tag.to_json()).figures) == FIGURES


def test_a_tag_written_before_corrections_reads_as_none_kept() -> None:
    older = {k: v for k, v in FIGURES.to_tag().items() if k != "correction_rows"}
    assert BatchFigures.from_tag({**older, "a_later_figure": 7}) == BatchFigures(**{**older, "correction_rows": 0})


def test_the_metrics_row_of_a_batch() -> None:
    row = metrics_row("q", 3, FIGURES, committed_ms=3_000)
    utc = dt.timezone.utc
    assert row == {
        "query_id": "q", "batch_id": 3, "committed_at": dt.datetime(1970, 1, 1, 0, 0, 3, tzinfo=utc),
        "input_rows": 10, "bronze_rows": 6, "quarantined_rows": 2, "duplicate_rows": 1, "conflicting_rows": 1,
        "late_rows": 1, "max_event_ts": dt.datetime(1970, 1, 1, 0, 0, 5, tzinfo=utc),
        "watermark": dt.datetime(1970, 1, 1, 0, 0, 4, tzinfo=utc), "duration_ms": 2_000, "rows_per_s": 5.0,
        "latency_p50_ms": 2_100, "latency_max_ms": 2_200, "kafka_lag": None, "correction_rows": 1}
    # A batch committed within its first millisecond, with no Kafka timestamp: no rate, no latency.
    quick = BatchFigures(started_ms=3_000, input_rows=0, bronze_rows=0, quarantined_rows=0, duplicate_rows=0,
                         conflicting_rows=0, late_rows=0)
    row = metrics_row("q", 4, quick, committed_ms=3_000)
    assert (row["duration_ms"], row["rows_per_s"], row["latency_p50_ms"], row["latency_max_ms"], row["max_event_ts"],
            row["watermark"], row["correction_rows"]) == (0, None, None, None, None, None, 0)
