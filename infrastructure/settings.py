"""Settings, read once from the environment at the entry point and passed down explicitly."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path(".data")
    host: str = "127.0.0.1"
    port: int = 8000
    log_format: str = "auto"  # auto | json | console
    log_level: str = "info"
    access_log: bool = True
    pool_min: int = 2
    pool_max: int = 16
    read_pool_max: int = 16
    # How long a request waits for a pooled connection before it answers 503 (the database is
    # down or every connection is busy).
    pool_timeout: float = 10.0
    # Threads running synchronous command handlers. Commands mostly wait on group commit, so
    # more threads than cores is right; the loop's default (cores + 4) capped batches at ~3.
    command_threads: int = 64
    projection_batch: int = 2000
    projection_threads: int = 2
    projection_poll_seconds: float = 2.0
    max_body_bytes: int = 1_048_576

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        log_format = env.get("MEMBERCORE_LOG_FORMAT", "auto").lower()
        if log_format not in {"auto", "json", "console"}:
            raise SettingsError("MEMBERCORE_LOG_FORMAT must be auto, json or console")
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            redis_url=env.get("REDIS_URL") or None,
            data_dir=Path(env.get("MEMBERCORE_DATA_DIR") or ".data"),
            host=env.get("MEMBERCORE_HOST") or "127.0.0.1",
            port=_int(env, "MEMBERCORE_PORT", 8000, 1),
            log_format=log_format,
            log_level=(env.get("MEMBERCORE_LOG_LEVEL") or "info").lower(),
            access_log=(env.get("MEMBERCORE_ACCESS_LOG") or "1") not in {"0", "false", "no"},
            pool_min=_int(env, "MEMBERCORE_POOL_MIN", 2, 1),
            pool_max=_int(env, "MEMBERCORE_POOL_MAX", 16, 1),
            read_pool_max=_int(env, "MEMBERCORE_READ_POOL_MAX", 16, 1),
            pool_timeout=_int(env, "MEMBERCORE_POOL_TIMEOUT", 10, 1),
            command_threads=_int(env, "MEMBERCORE_COMMAND_THREADS", 64, 1),
            projection_batch=_int(env, "MEMBERCORE_PROJECTION_BATCH", 2000, 1),
            projection_threads=_int(env, "MEMBERCORE_PROJECTION_THREADS", 2, 1),
        )

    def with_database(self, url: str) -> Settings:
        return replace(self, database_url=url)
