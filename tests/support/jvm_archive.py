"""JVM options for the Spark jobs the tests start as subprocesses, and the class archive that makes them start
sooner.

Every such job (a script run with ``python`` or ``spark-submit``) starts a JVM that loads and verifies many
thousands of Spark's classes before it does anything. A class-data sharing archive (Java's
``-XX:ArchiveClassesAtExit``, then ``-XX:SharedArchiveFile``) maps them from one file instead, which takes
seconds off a short job's start.

The archive is made once per machine by a short job (this module run as a script: Spark with this project's
jars, a Delta write, a MERGE, a streaming read) and kept in ``.cache/cds/`` under a name that changes with
Java, PySpark and Spark's jars, and with the jar the driver's class path begins with. It is written to a
temporary name and renamed when complete: a JVM given a truncated archive crashes, one given a missing archive
or one made for another class path ignores it (with the logging options below, silently). Class-data sharing
refuses a class path holding a non-empty folder, which rules out ``SPARK_CONF_DIR``: the flags go through
``SPARK_SUBMIT_OPTS``, which Spark's launcher adds to the driver's command line.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

# The JVMs of the brokers, Kafka nodes and Spark standalone daemons the tests start (KAFKA_OPTS, read by
# this project's broker launcher as by Kafka's scripts; SPARK_DAEMON_JAVA_OPTS, by Spark's): the JIT's first
# tier only, which saves them CPU time on a busy 2-core machine. Kafka keeps its G1 collector (a second
# collector flag is refused). The first tier alone gets a 48 MB code cache by default, which a Spark job
# fills in well under a minute; the JIT then stops for good ("CodeCache is full. Compiler has been
# disabled.") and new code runs interpreted: hence the size of the default tiered cache.
SERVICE_FLAGS = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m"
# The tests' jobs are short and their data small: the JIT's first tier only (its optimizing compiler spent
# more CPU than it saved) and the serial collector (no GC threads competing for the two cores): the tests
# that run jobs as subprocesses are faster that way.
SHORT_JOB_FLAGS = f"{SERVICE_FLAGS} -XX:+UseSerialGC"
# An archive that does not fit (another class path, another JDK) is ignored without a word.
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"

PROJECT_DIR = Path(__file__).resolve().parents[2]


def archive_path(cache_dir: Path = PROJECT_DIR / ".cache") -> Path:
    """Where the archive for this Java, this PySpark and its jars, and the driver's class path lives.

    A JVM maps the archive only if the class path it was made with begins the JVM's own (a mismatch is
    silent, see QUIET): the driver's begins with the local file system's jar (``lakehouse.platform.local_fs``)
    when there is a Java compiler to build it, so its source and the compiler's presence are part of the name.
    """
    import pyspark

    from lakehouse.platform.local_fs import SOURCE

    java = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=60).stderr
    jars = Path(pyspark.__file__).parent / "jars"
    listing = sorted(f"{p.name}:{p.stat().st_size}" for p in jars.glob("*.jar"))
    driver = [hashlib.sha256(SOURCE.read_bytes()).hexdigest(), str(shutil.which("javac") is not None)]
    key = hashlib.sha256("\n".join([java, pyspark.__version__, *listing, *driver]).encode()).hexdigest()[:16]
    return cache_dir / "cds" / f"spark-driver-{key}.jsa"


def java_options(archive: Path) -> str:
    """The driver JVM's options: the short-job flags and the archive (used once it exists); and, as a Spark
    setting (Spark reads ``spark.*`` system properties; the launcher splits this string as a shell would),
    the short-job flags for the executors that a job on a standalone cluster starts."""
    return (f"{SHORT_JOB_FLAGS} -XX:SharedArchiveFile={archive} {QUIET} "
            f"'-Dspark.executor.extraJavaOptions={SHORT_JOB_FLAGS}'")


def start_making(archive: Path, log: Path) -> subprocess.Popen | None:
    """Start the job that makes the archive, in the background (None if it exists already). Its JVM writes a
    temporary file that the job renames when the JVM has exited."""
    if archive.exists():
        return None
    archive.parent.mkdir(parents=True, exist_ok=True)
    for older in archive.parent.glob("spark-driver-*.jsa"):  # made for another Java, PySpark or jar set
        older.unlink(missing_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.pop("SPARK_SUBMIT_OPTS", None)
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(archive)], cwd=PROJECT_DIR,
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def stop_making(job: subprocess.Popen, archive: Path) -> None:
    """End a run that finished before the archive was made: stop its job and JVM, remove the partial file."""
    if job.poll() is None:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(60)
    archive.with_name(f"{archive.name}.{job.pid}.partial").unlink(missing_ok=True)


def _make(archive: Path) -> int:
    """Run a short Spark job in a child process whose JVM dumps the classes it loaded; rename on success."""
    archive = archive.resolve()
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(f"{archive.name}.{os.getpid()}.partial")
    env = dict(os.environ, SPARK_SUBMIT_OPTS=f"{SHORT_JOB_FLAGS} -XX:ArchiveClassesAtExit={partial}")
    result = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--job"], cwd=PROJECT_DIR, env=env,
                            timeout=900)
    if result.returncode == 0 and partial.exists():
        os.replace(partial, archive)
        return 0
    partial.unlink(missing_ok=True)
    return result.returncode or 1


def _job() -> None:
    """The classes most jobs load: Spark with this project's jars, a Delta write, a MERGE, a streaming read."""
    sys.path.insert(0, str(PROJECT_DIR))
    from lakehouse.platform.config import load_config
    from lakehouse.platform.spark import build_spark

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(PROJECT_DIR / "config.ini", env={}, overrides={
            ("paths", "data_dir"): tmp, ("paths", "cache_dir"): str(PROJECT_DIR / ".cache"),
            ("spark", "master"): "local[2]", ("spark", "shuffle_partitions"): 2})
        spark = build_spark(cfg, "class-archive")
        table = f"{tmp}/t"
        spark.range(10).selectExpr("id", "cast(id as string) as s").write.format("delta").save(table)
        spark.range(5, 15).selectExpr("id", "'new' as s").createOrReplaceTempView("updates")
        spark.sql(f"MERGE INTO delta.`{table}` t USING updates u ON t.id = u.id "
                  "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *")
        query = (spark.readStream.format("delta").load(table).writeStream
                 .foreachBatch(lambda batch, _: batch.groupBy("s").count().collect())
                 .option("checkpointLocation", f"{tmp}/checkpoint").trigger(availableNow=True).start())
        query.awaitTermination()
        assert spark.read.format("delta").load(table).count() == 15
        jvm = spark.sparkContext._gateway.proc  # spark-submit, which became the JVM (exec)
        spark.stop()
        # The JVM writes the archive as it exits, which it does when its standard input closes: wait for it,
        # so that the archive is complete before it is renamed.
        jvm.stdin.close()
        jvm.wait(300)


if __name__ == "__main__":
    if sys.argv[1:] == ["--job"]:
        _job()
    else:
        sys.exit(_make(Path(sys.argv[1])))
