"""Per-batch values kept out of the code Spark compiles, so that a stream's batches share one compiled class.

Spark writes a long or timestamp literal into the Java source it compiles for a stage. A value that
changes with every batch (the batch's time, its id, the watermark) therefore made every batch compile its
stages anew, and the JVM ran the new classes interpreted until its JIT compiler had compiled them again:
at 1,000 events/s the Bronze stream kept a JIT compiler thread busy most of the time, and each batch ran
its contract check on cold code. A decimal literal is handed to the compiled code by reference instead;
added to a per-record zero, constant folding cannot turn it back into a long literal. The code is then the
same in every batch and Spark reuses the class it compiled first.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F


def per_batch_long(value: Column | int, row_anchor: Column) -> Column:
    """``value`` (a long literal or an expression folded to one) as a BIGINT column that the compiled code
    reads by reference. ``row_anchor`` is any non-null integer column of the rows (e.g. a Kafka offset)."""
    literal = F.lit(value) if isinstance(value, int) else value
    return (row_anchor * 0 + literal.cast("decimal(20,0)")).cast("long")
