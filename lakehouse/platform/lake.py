"""Where the lake's tables and streaming checkpoints live: a local folder, or S3-compatible object storage.

``[paths] lake`` is empty (the tables live under ``data_dir``, as ``Path`` objects) or an ``s3a://bucket/prefix``
URI. On object storage the locations are ``ObjectPath`` objects: they answer the few questions the pipeline's
Python side asks of a location (``/``, ``str`` — the URI Spark and delta-rs take —, ``exists``, ``is_dir``,
``glob`` of one folder, ``read_text``) through pyarrow's S3 client, so the code that takes a ``Path`` for a
local lake takes an ``ObjectPath`` unchanged. What only a local folder can do (``open``, ``os.fspath``) fails
loudly on an ``ObjectPath`` instead of writing a stray local file. ``remove_tree`` removes either kind.

Everything else stays on the local disk: the broker's data, status files, logs, caches.
"""

from __future__ import annotations

import fnmatch
import functools
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Union

from lakehouse.platform.config import Config, ConfigError

SCHEME = "s3a://"


@dataclass(frozen=True)
class S3Settings:
    """How to reach the object store (``[s3]``); the secret comes from the environment only."""

    endpoint: str
    region: str
    path_style_access: bool
    access_key: str
    secret_key: str | None = field(repr=False)

    @classmethod
    def from_config(cls, cfg: Config) -> "S3Settings":
        s3 = cfg.s3
        return cls(endpoint=s3.endpoint or "", region=s3.region, path_style_access=s3.path_style_access,
                   access_key=s3.access_key, secret_key=s3.secret_key.reveal() if s3.secret_key else None)

    @property
    def secret(self) -> str:
        """The secret key, or a ConfigError naming where it comes from (checked when first needed, so
        that the parts of the pipeline that never touch the lake run without it)."""
        if not self.secret_key:
            raise ConfigError("[s3] secret_key is not set: the object store's secret key is read from the "
                              "environment variable LAKEHOUSE_S3_SECRET_KEY only")
        return self.secret_key

    @property
    def secure(self) -> bool:
        return not self.endpoint.startswith("http://")

    @property
    def host_port(self) -> str:
        """The endpoint without its scheme (empty: AWS's own endpoint for the region)."""
        return self.endpoint.split("://", 1)[-1].rstrip("/")

    def hadoop_options(self) -> dict[str, str]:
        """The S3A connector's settings (``spark.hadoop.`` prefix left out)."""
        options = {
            "fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
            "fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
            "fs.s3a.access.key": self.access_key,
            "fs.s3a.secret.key": self.secret,
            "fs.s3a.endpoint.region": self.region,
            "fs.s3a.path.style.access": str(self.path_style_access).lower(),
            "fs.s3a.connection.ssl.enabled": str(self.secure).lower(),
        }
        if self.endpoint:
            options["fs.s3a.endpoint"] = self.endpoint
        return options

    def delta_rs_options(self) -> dict[str, str]:
        """The same settings for delta-rs (the web dashboard), which reads without a JVM."""
        options = {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret,
                   "AWS_REGION": self.region,
                   "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": str(not self.path_style_access).lower()}
        if self.endpoint:
            options["AWS_ENDPOINT_URL"] = self.endpoint
            options["AWS_ALLOW_HTTP"] = str(not self.secure).lower()
        return options

    def filesystem(self):
        """A pyarrow S3 client for these settings (one per process)."""
        return _filesystem(self)


@functools.lru_cache(maxsize=8)
def _filesystem(settings: S3Settings):
    from pyarrow import fs

    self = settings
    return fs.S3FileSystem(access_key=self.access_key, secret_key=self.secret, region=self.region,
                               endpoint_override=self.host_port or None, scheme="https" if self.secure else "http",
                               force_virtual_addressing=not self.path_style_access, connect_timeout=5,
                               request_timeout=30)


def split_uri(uri: str) -> tuple[str, str]:
    """``s3a://bucket/some/prefix`` → ``("bucket", "some/prefix")``; anything else is refused."""
    if not uri.startswith(SCHEME):
        raise ValueError(f"expected an {SCHEME}bucket/prefix URI, got {uri!r}")
    bucket, _, prefix = uri[len(SCHEME):].partition("/")
    return bucket, prefix.strip("/")


class ObjectPath:
    """A location on object storage, with the part of ``Path``'s interface the pipeline uses."""

    __slots__ = ("_settings", "_key")

    def __init__(self, settings: S3Settings, key: str):
        self._settings = settings
        self._key = str(PurePosixPath(key))  # "bucket/prefix/…", no scheme, no trailing slash

    @classmethod
    def from_uri(cls, uri: str, settings: S3Settings) -> "ObjectPath":
        bucket, prefix = split_uri(uri)
        return cls(settings, f"{bucket}/{prefix}" if prefix else bucket)

    @property
    def key(self) -> str:
        return self._key

    @property
    def settings(self) -> S3Settings:
        return self._settings

    @property
    def fs(self):
        """The pyarrow S3 client of this location's store."""
        return self._settings.filesystem()

    def __truediv__(self, name: str) -> "ObjectPath":
        return ObjectPath(self._settings, f"{self._key}/{name}")

    def __str__(self) -> str:
        return SCHEME + self._key

    def __repr__(self) -> str:
        return f"ObjectPath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __fspath__(self) -> str:
        raise TypeError(f"{self} is on object storage, not a local file")

    @property
    def name(self) -> str:
        return PurePosixPath(self._key).name

    @property
    def parent(self) -> "ObjectPath":
        return ObjectPath(self._settings, str(PurePosixPath(self._key).parent))

    def _type(self):
        return self.fs.get_file_info(self._key).type

    def exists(self) -> bool:
        from pyarrow import fs

        return self._type() != fs.FileType.NotFound

    def is_dir(self) -> bool:
        from pyarrow import fs

        return self._type() == fs.FileType.Directory

    def is_file(self) -> bool:
        from pyarrow import fs

        return self._type() == fs.FileType.File

    def iterdir(self) -> list["ObjectPath"]:
        from pyarrow import fs

        infos = self.fs.get_file_info(fs.FileSelector(self._key, allow_not_found=True))
        return [ObjectPath(self._settings, info.path) for info in infos]

    def glob(self, pattern: str) -> list["ObjectPath"]:
        """The entries of this folder whose names match ``pattern`` (one level, as the callers need)."""
        if "/" in pattern or "**" in pattern:
            raise ValueError(f"only one-level patterns are supported on object storage, got {pattern!r}")
        return [p for p in self.iterdir() if fnmatch.fnmatchcase(p.name, pattern)]

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self._key) as stream:
            return stream.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        with self.fs.open_output_stream(self._key) as stream:
            stream.write(data)


LakePath = Union[Path, ObjectPath]


def lake_root(cfg: Config) -> LakePath:
    """The folder of the tables and checkpoints: ``[paths] lake``, or ``data_dir`` when it is empty."""
    lake = cfg.paths.lake or ""
    if not lake:
        return cfg.data_dir
    if lake.startswith(SCHEME):
        return ObjectPath.from_uri(lake, S3Settings.from_config(cfg))
    return cfg.resolve_path(lake)


def on_object_storage(cfg: Config) -> bool:
    return (cfg.paths.lake or "").startswith(SCHEME)


def remove_tree(location: LakePath) -> None:
    """Remove a folder and everything under it (nothing when it does not exist)."""
    if isinstance(location, Path):
        shutil.rmtree(location, ignore_errors=True)
        return
    from pyarrow import fs

    infos = location.fs.get_file_info(fs.FileSelector(location.key, recursive=True, allow_not_found=True))
    # One object at a time: a bulk DeleteObjects needs a Content-MD5 header that some S3-compatible
    # stores (s3proxy) insist on and pyarrow does not send; then the emptied folders, deepest first.
    for info in infos:
        if info.type == fs.FileType.File:
            location.fs.delete_file(info.path)
    for info in sorted((i for i in infos if i.type == fs.FileType.Directory), key=lambda i: -i.path.count("/")):
        location.fs.delete_dir(info.path)
    if location.is_dir():
        location.fs.delete_dir(location.key)
