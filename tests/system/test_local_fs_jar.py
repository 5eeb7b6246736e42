"""The jar of the local file system class the jobs give Hadoop (lakehouse/platform/java/NioLocalFileSystem.java):
compiled by ``javac``, a JVM of its own started as a subprocess, once per version of the source, and left out
when there is no compiler. What the class does in the shared session: tests/integration/test_local_fs.py."""

from __future__ import annotations

from pathlib import Path

from lakehouse.platform.local_fs import local_fs_jar


def test_the_jar_is_built_once_per_source_and_skipped_without_a_compiler(tmp_path: Path, monkeypatch) -> None:
    jar = local_fs_jar(tmp_path)
    assert jar is not None and jar.is_file() and jar.parent == tmp_path / "jvm"
    built = jar.stat().st_mtime_ns
    assert local_fs_jar(tmp_path) == jar and jar.stat().st_mtime_ns == built  # not built again
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert local_fs_jar(tmp_path / "other") is None  # no javac: the jobs use Hadoop's class
