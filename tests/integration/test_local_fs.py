"""The local file system class the jobs give Hadoop (lakehouse/platform/java/NioLocalFileSystem.java): in effect
in the shared session, and doing what Hadoop's own class does for the two operations it replaces. Its jar's
build (javac, a process of its own): tests/system/test_local_fs_jar.py."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from py4j.protocol import Py4JJavaError

from lakehouse.platform.local_fs import CLASS, local_fs_jar


def jvm_path(spark, path: Path):
    return spark._jvm.org.apache.hadoop.fs.Path(f"file://{path}")


def raw_file_systems(spark):
    """Hadoop's raw local file system and ours, initialised alike."""
    jvm, conf = spark._jvm, spark._jsc.hadoopConfiguration()
    uri = jvm.java.net.URI("file:///")
    hadoops = jvm.org.apache.hadoop.fs.RawLocalFileSystem()
    ours = getattr(jvm.lakehouse.hadoop, "NioLocalFileSystem$Raw")()
    for fs in (hadoops, ours):
        fs.initialize(uri, conf)
    return hadoops, ours


def test_the_session_writes_local_files_through_it(spark, tmp_path: Path) -> None:
    jvm = spark._jvm
    conf = spark._jsc.hadoopConfiguration()
    assert conf.get("fs.file.impl") == CLASS
    assert jvm.org.apache.hadoop.fs.FileSystem.get(jvm.java.net.URI("file:///"), conf).getClass().getName() == CLASS
    context = jvm.org.apache.hadoop.fs.FileContext.getLocalFSFileContext(conf)
    assert context.getDefaultFileSystem().getClass().getName() == f"{CLASS}$Fs"
    # A Delta table written and read back through it (its commits rename through FileContext).
    path = tmp_path / "t"
    spark.range(3).write.format("delta").save(str(path))
    spark.range(3, 5).write.format("delta").mode("append").save(str(path))
    assert sorted(r.id for r in spark.read.format("delta").load(str(path)).collect()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("mode", [0o644, 0o600, 0o755, 0o640, 0o711, 0o777, 0o400])
def test_permissions_are_set_as_hadoop_sets_them(spark, tmp_path: Path, mode: int) -> None:
    jvm = spark._jvm
    permission = jvm.org.apache.hadoop.fs.permission.FsPermission(mode)
    modes = []
    for name, fs in zip(("hadoop", "ours"), raw_file_systems(spark)):
        file, folder = tmp_path / f"{name}.txt", tmp_path / f"{name}-dir"
        file.write_text("x")
        folder.mkdir()
        fs.setPermission(jvm_path(spark, file), permission)
        fs.setPermission(jvm_path(spark, folder), permission)
        # A new file created with a permission (how Parquet and Delta create theirs).
        created = tmp_path / f"{name}-created"
        fs.create(jvm_path(spark, created), permission, False, 4096, 1, 1 << 20, None).close()
        modes.append([stat.S_IMODE(os.stat(p).st_mode) for p in (file, folder, created)])
    assert modes[0] == modes[1]
    assert modes[1][0] == mode


def test_links_and_missing_paths_get_the_status_hadoop_gives(spark, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("abc")
    (tmp_path / "folder").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "file")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")

    def described(status) -> tuple:
        target = status.getSymlink().toUri().getPath() if status.isSymlink() else None
        return (status.getLen(), status.isDirectory(), status.isSymlink(), target,
                status.getPath().toUri().getPath(), status.getModificationTime())

    for name in ("file", "folder", "link"):
        hadoops, ours = (described(fs.getFileLinkStatus(jvm_path(spark, tmp_path / name)))
                         for fs in raw_file_systems(spark))
        assert hadoops == ours, name
    ours = raw_file_systems(spark)[1]
    assert described(ours.getFileLinkStatus(jvm_path(spark, tmp_path / "file")))[:3] == (3, False, False)
    assert described(ours.getFileLinkStatus(jvm_path(spark, tmp_path / "folder")))[1] is True
    for name in ("missing", "dangling"):  # Hadoop's class finds neither; nor does ours
        for fs in raw_file_systems(spark):
            with pytest.raises(Py4JJavaError, match="FileNotFoundException"):
                fs.getFileLinkStatus(jvm_path(spark, tmp_path / name))


def test_an_unwritable_cache_leaves_the_jobs_on_hadoops_class(tmp_path: Path) -> None:
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")
    assert local_fs_jar(blocked) is None
