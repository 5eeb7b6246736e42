"""The configuration file a Bronze benchmark runs its jobs with: its own topic and data folder, the
project's jar cache, and the project's Kafka security settings (the password stays in the environment)."""

from __future__ import annotations

from pathlib import Path

from lakehouse.platform.config import PROJECT_DIR, load_config
from lakehouse.platform.kafka_security import security_settings


def write_bench_config(path: Path, topic: str, data_dir: Path, streaming: dict[str, str] | None = None) -> Path:
    security = "".join(f"{key} = {value}\n" for (_, key), value in security_settings(load_config()).items())
    extra = "".join(f"{key} = {value}\n" for key, value in (streaming or {}).items())
    path.write_text(f"[kafka]\ntopic = {topic}\n{security}[paths]\ndata_dir = {data_dir}\n"
                    f"cache_dir = {PROJECT_DIR / '.cache'}\n" + (f"[streaming]\n{extra}" if extra else ""),
                    encoding="utf-8")
    return path
