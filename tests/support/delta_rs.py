"""Input tables written through delta-rs (``deltalake``), without a Spark job: for tests whose subject reads
Bronze (Silver's job, the readers) rather than how Spark writes it.

A Spark write of a handful of rows plans and runs a job and commits through Delta's Scala library: about a
second of CPU each in the tests' session, where delta-rs takes milliseconds. The tables are the ones Spark
would write from the same rows and schema, as far as their readers can tell: the same column types (Spark
``TIMESTAMP`` is Delta ``timestamp``, with a time zone: naive datetimes are taken as this machine's local
time, as ``spark.createDataFrame`` takes them), nullable columns, the same partitioning, the same protocol
(reader 1, writer 2), a WRITE commit per call, statistics per file. Tests of Spark's own writes (the Bronze
writer, upkeep, Delta's history as Spark writes it) keep Spark.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
from deltalake import write_deltalake
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import (
    DataType,
    LongType,
    StructField,
    StructType,
    TimestampType,
    _parse_datatype_string,
)

# spark.range's schema: one column, never null.
RANGE = StructType([StructField("id", LongType(), False)])


def spark_schema(schema: StructType | str) -> StructType:
    """A Spark schema, from itself or from a DDL string as ``spark.createDataFrame`` takes it (parsed by the
    tests' JVM, as Spark parses it)."""
    parsed = _parse_datatype_string(schema) if isinstance(schema, str) else schema
    assert isinstance(parsed, StructType), schema
    return parsed


def _value(value: Any, data_type: DataType) -> Any:
    if isinstance(data_type, TimestampType) and isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.astimezone(dt.timezone.utc)  # a naive datetime is local time, as PySpark reads it
    if isinstance(value, bytearray):
        return bytes(value)
    return value


def write_delta(path: Path, rows: Sequence[tuple | dict], schema: StructType | str,
                partition_by: str | None = None, mode: str = "append") -> None:
    """Write ``rows`` (tuples in the schema's order, or dicts by column name) to the Delta table at ``path``
    (created by the first write) as ``spark.createDataFrame(rows, schema).write.format("delta")`` would."""
    struct = spark_schema(schema)
    names = struct.names
    columns = {name: [] for name in names}
    for row in rows:
        values = [row.get(name) for name in names] if isinstance(row, dict) else list(row)
        assert len(values) == len(names), (row, names)
        for field, value in zip(struct.fields, values):
            columns[field.name].append(_value(value, field.dataType))
    table = pa.Table.from_pydict(columns, schema=to_arrow_schema(struct, timezone="UTC"))
    write_deltalake(str(path), table, mode=mode, partition_by=[partition_by] if partition_by else None)


def write_range(path: Path, start: int, end: int | None = None) -> None:
    """Append ``spark.range(start, end)``'s rows to the table at ``path``, as ``write_delta`` does."""
    first, last = (0, start) if end is None else (start, end)
    write_delta(path, [(i,) for i in range(first, last)], RANGE)
