"""Hadoop's local file system without its shell commands, for the jobs that run Spark on this machine.

Without Hadoop's native library (pip's PySpark has none), every file Spark or Delta creates on the local
disk gets its permissions from a ``chmod`` process, and every Delta commit's rename runs ``readlink``: about
twenty processes started from the job's JVM per Delta append. ``java/NioLocalFileSystem.java`` does those two
operations in Java and leaves everything else to Hadoop. It is compiled once per version of its source into
the cache directory; without a Java compiler the jobs run on Hadoop's own class, as before.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("java") / "NioLocalFileSystem.java"
CLASS = "lakehouse.hadoop.NioLocalFileSystem"


def _hadoop_api_jar() -> Path | None:
    import pyspark

    jars = sorted((Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar"))
    return jars[-1] if jars else None


def local_fs_jar(cache_dir: Path) -> Path | None:
    """The compiled class's jar in ``cache_dir`` (built if missing), or None when it cannot be built."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    jar = cache_dir / "jvm" / f"lakehouse-localfs-{digest}.jar"
    if jar.is_file():
        return jar
    javac, hadoop = shutil.which("javac"), _hadoop_api_jar()
    if javac is None or hadoop is None:
        log.info("No Java compiler (javac) or Hadoop API jar: Spark uses Hadoop's local file system, which runs "
                 "chmod and readlink for each file it writes")
        return None
    try:
        jar.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=jar.parent) as work:
            classes = Path(work) / "classes"
            subprocess.run([javac, "-nowarn", "-d", str(classes), "-cp", str(hadoop), str(SOURCE)], check=True,
                           capture_output=True, text=True, timeout=300)
            built = Path(work) / jar.name
            with zipfile.ZipFile(built, "w", zipfile.ZIP_DEFLATED) as archive:
                for path in sorted(classes.rglob("*.class")):
                    archive.write(path, path.relative_to(classes).as_posix())
            os.replace(built, jar)  # whole or absent: another job may be building it at the same time
    except (OSError, subprocess.SubprocessError) as e:  # a read-only or full cache, a failed compile
        detail = (getattr(e, "stderr", None) or str(e)).strip()
        log.warning("Could not build %s (%s): Spark uses Hadoop's local file system", jar,
                    detail.splitlines()[0] if detail else e.__class__.__name__)
        return None
    return jar


def local_fs_settings(jar: Path) -> dict[str, str]:
    """Spark settings that load the class from ``jar`` for file: paths (FileSystem and FileContext APIs)."""
    return {"spark.driver.extraClassPath": str(jar),
            "spark.hadoop.fs.file.impl": CLASS,
            "spark.hadoop.fs.AbstractFileSystem.file.impl": f"{CLASS}$Fs"}
