"""The one place that knows where tables, checkpoints, logs and caches live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lakehouse.platform.config import Config
from lakehouse.platform.lake import LakePath, lake_root


@dataclass(frozen=True)
class Paths:
    """Absolute locations derived from ``[paths]`` in the configuration.

    Tables and checkpoints live under ``lake`` (``data_dir`` unless ``[paths] lake`` says otherwise, which
    may be an ``s3a://`` URI: see ``lake``); everything else under ``data_dir`` on the local disk.
    """

    data_dir: Path
    cache_dir: Path
    lake: LakePath | None = None

    @classmethod
    def from_config(cls, cfg: Config) -> "Paths":
        return cls(data_dir=cfg.data_dir, cache_dir=cfg.cache_dir, lake=lake_root(cfg))

    @property
    def lake_dir(self) -> LakePath:
        return self.data_dir if self.lake is None else self.lake

    # Delta tables
    @property
    def delta_dir(self) -> LakePath:
        return self.lake_dir / "delta"

    @property
    def bronze(self) -> LakePath:
        return self.delta_dir / "bronze" / "ventes"

    @property
    def corrections(self) -> LakePath:
        """Returns and cancellations (``type_evenement`` retour or annulation) kept in Bronze."""
        return self.delta_dir / "bronze" / "corrections"

    @property
    def quarantine(self) -> LakePath:
        return self.delta_dir / "bronze" / "ventes_quarantine"

    @property
    def duplicates(self) -> LakePath:
        """Records that repeat a kept sale (raw bytes, Kafka position, the sale they repeat)."""
        return self.delta_dir / "bronze" / "ventes_duplicates"

    @property
    def silver_dir(self) -> LakePath:
        return self.delta_dir / "silver"

    def silver(self, table: str) -> LakePath:
        return self.silver_dir / table

    @property
    def silver_pairs(self) -> LakePath:
        """Distinct pairs behind Silver's distinct counts (internal)."""
        return self.silver_dir / "_pairs"

    @property
    def bronze_metrics(self) -> LakePath:
        return self.delta_dir / "monitoring" / "bronze_metrics"

    # Streaming state
    @property
    def checkpoints_dir(self) -> LakePath:
        return self.lake_dir / "checkpoints"

    @property
    def bronze_checkpoint(self) -> LakePath:
        return self.checkpoints_dir / "bronze_ventes"

    @property
    def silver_checkpoint(self) -> LakePath:
        return self.checkpoints_dir / "silver"

    # Live status files (the demo's terminal view reads them; no Spark needed)
    @property
    def status_dir(self) -> Path:
        return self.data_dir / "status"

    @property
    def bronze_status(self) -> Path:
        return self.status_dir / "bronze.json"

    @property
    def silver_status(self) -> Path:
        """The Silver job's status and heartbeat (``lakehouse.silver.freshness``)."""
        return self.status_dir / "silver.json"

    @property
    def silver_dashboard(self) -> Path:
        return self.status_dir / "silver_dashboard.txt"

    @property
    def producer_summary(self) -> Path:
        return self.status_dir / "producer_summary.json"

    # Local broker, logs, caches
    @property
    def kafka_data(self) -> Path:
        return self.data_dir / "kafka"

    @property
    def kafka_docker(self) -> Path:
        """What the secured docker-compose broker runs from (kafka_broker docker-prepare makes it)."""
        return self.data_dir / "kafka-docker"

    @property
    def kafka_tls(self) -> Path:
        """The secured local broker's CA certificate, keystore and secrets (never in git: under data/)."""
        return self.kafka_data / "tls"

    @property
    def kafka_ca(self) -> Path:
        """The local broker's CA certificate (PEM), which clients trust when [kafka] ssl_cafile is empty."""
        return self.kafka_tls / "ca.pem"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def ivy_dir(self) -> Path:
        return self.cache_dir / "ivy"

    def kafka_libs(self, version: str) -> Path:
        return self.cache_dir / f"kafka-{version}" / "libs"

    def data_dirs(self) -> list[Path]:
        """Local directories the pipeline writes to and that setup creates (on object storage, folders
        need no creating)."""
        lake = [p for p in (self.delta_dir, self.checkpoints_dir) if isinstance(p, Path)]
        return [*lake, self.kafka_data, self.logs_dir]
