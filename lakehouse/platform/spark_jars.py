"""Spark's Kafka source and Delta jars, resolved once with Ivy and then passed as local files.

Given ``spark.jars.packages``, every Spark start runs Ivy in the spark-submit launcher that pyspark starts,
and the launcher prints about a hundred lines of resolution report on the terminal, even when every jar
is cached. Instead, the first start resolves the packages in a one-off spark-submit run whose output goes
to ``data/logs/spark-jars.log`` (or to the terminal with ``verbose``), and writes the resolved jar files
into a listing beside the Ivy cache. Later starts read the listing and pass the files as ``spark.jars``:
no Ivy, nothing printed, a few seconds saved. A listing whose files are gone is resolved again.

Two processes starting at once on a fresh cache (two scripts, two test workers) must not run Ivy into the
same directory together: Ivy's downloads are not safe against each other (one gets "download failed" on a
jar the other is writing). The resolution holds a lock file beside the cache; whoever comes second waits,
then reads the listing the first one wrote.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import subprocess
import sys
import zipfile
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

from lakehouse.platform.paths import Paths

log = logging.getLogger(__name__)

PROBE = Path(__file__).with_name("jars_probe.py")
SCALA_BINARY = "2.13"


def spark_packages(object_storage: bool = False) -> list[str]:
    """Maven coordinates of the Kafka source and Delta jars matching the installed pyspark/delta-spark,
    and with ``object_storage`` the S3A connector (``hadoop-aws``, which brings its AWS SDK).

    Delta publishes one jar per Spark minor version (``delta-spark_<spark major.minor>_<scala>``);
    the Kafka source is versioned exactly like Spark; hadoop-aws must be the Hadoop that pyspark ships.
    (Read from the installed packages' metadata and file names, so that knowing them does not start a JVM.)
    """
    spark_version = version("pyspark")
    spark_minor = ".".join(spark_version.split(".")[:2])
    packages = [
        f"org.apache.spark:spark-sql-kafka-0-10_{SCALA_BINARY}:{spark_version}",
        f"io.delta:delta-spark_{spark_minor}_{SCALA_BINARY}:{version('delta-spark')}",
    ]
    if object_storage:
        packages.append(f"org.apache.hadoop:hadoop-aws:{hadoop_version()}")
    return packages


def _pyspark_jars() -> Path | None:
    """The folder of the jars pyspark ships (Spark's own class path)."""
    from importlib.util import find_spec

    spec = find_spec("pyspark")
    return Path(spec.origin).parent / "jars" if spec and spec.origin else None


# A stub class several Spark artifacts carry, the same in each.
SHARED_STUB = "org/apache/spark/unused/"


def _classes(jar: Path) -> set[str]:
    with zipfile.ZipFile(jar) as z:
        return {n for n in z.namelist() if n.endswith(".class") and not n.startswith(("META-INF/", SHARED_STUB))}


def beside_spark(jars: list[str], listing: Path) -> list[str]:
    """The resolved jars that hold none of the classes of Spark's own jars (worked out once per listing).

    Given with ``spark.jars``, a jar is loaded by a class loader that asks Spark's first, so a dependency
    that Spark ships in another version (jackson, parquet, log4j, RoaringBitmap's shims ...) is never used.
    Put ahead of Spark's own jars (``extraClassPath``) it would be used first, and break Spark
    (jackson-databind 2.13 under Spark's 2.21 Scala module): such jars are left out, which keeps what
    ``spark.jars`` gives.
    """
    kept_file = listing.with_name(f"{listing.name}.beside-spark")
    if kept_file.exists():
        kept = [line for line in kept_file.read_text(encoding="utf-8").splitlines() if line]
        if set(kept) <= set(jars):
            return kept
    folder = _pyspark_jars()
    own = set().union(*(_classes(p) for p in folder.glob("*.jar"))) if folder else set()
    kept = [jar for jar in jars if not _classes(Path(jar)) & own]
    partial = kept_file.with_name(f"{kept_file.name}.{os.getpid()}.tmp")
    partial.write_text("\n".join(kept) + "\n", encoding="utf-8")
    os.replace(partial, kept_file)
    return kept


def hadoop_version() -> str:
    """The Hadoop version of pyspark's own client jars (``hadoop-client-api-<version>.jar``)."""
    jars = _pyspark_jars()
    found = sorted(jars.glob("hadoop-client-api-*.jar")) if jars else []
    if not found:
        raise JarResolutionError("pyspark's Hadoop client jar (hadoop-client-api-*.jar) was not found")
    return found[0].name[len("hadoop-client-api-"):-len(".jar")]


def jars_resolved(paths: Paths, repositories: str | None = None, object_storage: bool = False) -> bool:
    """Whether this project's jars are resolved already (a start then runs no Ivy)."""
    return cached_jars(listing_file(paths, spark_packages(object_storage), repositories)) is not None


class JarResolutionError(RuntimeError):
    """spark-submit could not resolve the packages (no network, a wrong mirror, a wrong version)."""


def listing_file(paths: Paths, packages: list[str], repositories: str | None) -> Path:
    """Where the resolved jars of these packages (from these repositories) are listed."""
    key = hashlib.sha256("|".join([*packages, repositories or ""]).encode()).hexdigest()[:16]
    return paths.ivy_dir / f"resolved-{key}.txt"


def cached_jars(listing: Path) -> list[str] | None:
    """The listed jar files, or None when there is no listing or one of its files is gone."""
    try:
        jars = [line for line in listing.read_text(encoding="utf-8").splitlines() if line]
    except OSError:
        return None
    return jars if jars and all(Path(j).is_file() for j in jars) else None


def _spark_submit() -> str:
    from pyspark.find_spark_home import _find_spark_home

    return os.path.join(_find_spark_home(), "bin", "spark-submit")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def resolve_jars(paths: Paths, packages: list[str], repositories: str | None = None,
                 verbose: bool = False) -> list[str]:
    """The local jar files of ``packages`` and their dependencies, resolved with Spark's Ivy the first
    time (downloading what is missing into the cache), read from the listing afterwards.

    Ivy's output goes to ``<data>/logs/spark-jars.log``, or to this process's terminal when ``verbose``;
    a failed resolution raises ``JarResolutionError`` with the end of that output.
    """
    listing = listing_file(paths, packages, repositories)
    jars = cached_jars(listing)
    if jars is not None:
        return jars
    paths.ivy_dir.mkdir(parents=True, exist_ok=True)
    with open(paths.ivy_dir / "resolve.lock", "a", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("Another process is resolving Spark's jars into %s; waiting for it", paths.ivy_dir)
            fcntl.flock(lock, fcntl.LOCK_EX)
        jars = cached_jars(listing)  # resolved by the process that held the lock
        if jars is not None:
            return jars
        return _resolve(paths, packages, repositories, verbose, listing)


def _resolve(paths: Paths, packages: list[str], repositories: str | None, verbose: bool,
             listing: Path) -> list[str]:
    """Run Ivy (the caller holds the lock) and write the listing."""
    paths.logs_dir.mkdir(parents=True, exist_ok=True)
    log_file = paths.logs_dir / "spark-jars.log"
    found = listing.with_name(f"{listing.name}.{os.getpid()}.tmp")
    command = [_spark_submit(), "--packages", ",".join(packages), "--conf", f"spark.jars.ivy={paths.ivy_dir}"]
    if repositories:
        command += ["--repositories", repositories]
    command += [str(PROBE), str(found)]
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    log.info("Resolving Spark's Kafka and Delta jars with Ivy (the first time downloads them)%s",
             "" if verbose else f"; its output goes to {log_file}")
    if verbose:
        result = subprocess.run(command, env=env, stdin=subprocess.DEVNULL)
    else:
        with open(log_file, "a", encoding="utf-8") as out:
            out.write(f"\n=== {datetime.now():%Y-%m-%d %H:%M:%S} {' '.join(command)}\n")
            out.flush()
            result = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
    if result.returncode != 0 or not found.exists():
        found.unlink(missing_ok=True)
        where = "" if verbose else f"; the end of {log_file}:\n{_tail(log_file)}"
        raise JarResolutionError(f"jar resolution failed (spark-submit exit {result.returncode}){where}")
    # The probe's PYTHONPATH also holds Spark's own spark-core jar: keep what Ivy retrieved.
    retrieved = paths.ivy_dir.resolve() / "jars"
    kept = [j for j in found.read_text(encoding="utf-8").splitlines() if Path(j).resolve().parent == retrieved]
    found.write_text("".join(f"{j}\n" for j in kept), encoding="utf-8")
    os.replace(found, listing)  # atomic: a concurrent start reads the old listing or the new one
    jars = cached_jars(listing)
    if jars is None:
        raise JarResolutionError(f"jar resolution listed no jar file in {listing}")
    return jars
