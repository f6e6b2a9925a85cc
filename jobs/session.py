"""Build a SparkSession from a profile in conf/spark/*.yaml, with Delta configured.

Delta's jars are resolved from Maven Central once, into a user-level Ivy cache, and later
sessions load them from that cache as plain jar files: no network after the first run.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pyspark
import yaml
from pyspark.sql import SparkSession

from hcmrm.config import ConfigError
from hcmrm.settings import CONF_DIR

SCALA_VERSION = "2.13"
ARROW_BATCH_ROWS = "spark.sql.execution.arrow.maxRecordsPerBatch"
ARROW_BATCH_BYTES = "spark.sql.execution.arrow.maxBytesPerBatch"
MAX_ARROW_BATCH_BYTES = 2**31 - 1  # Spark's limit for maxBytesPerBatch, Arrow's for one binary column
DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"
QUIET_LOG4J = CONF_DIR / "spark" / "log4j2-quiet.properties"  # errors only, one line each, no Java stacks
QUIET_LEVELS = ("ERROR", "FATAL", "OFF")

log = logging.getLogger("hcmrm.session")


def delta_artifact() -> str:
    """The Maven coordinate of the Delta jar that matches the installed pyspark and delta-spark."""
    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    delta_version = importlib.metadata.version("delta-spark")
    return f"io.delta:delta-spark_{spark_minor}_{SCALA_VERSION}:{delta_version}"


def ivy_dir() -> Path:
    base = os.environ.get("HCMRM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "hcmrm"
    )
    return Path(base) / "ivy"


def cached_delta_jars() -> list[Path]:
    """The jars of a previous resolution, or [] when the main Delta jar is not cached yet."""
    _, name, version = delta_artifact().split(":")
    jars = ivy_dir() / "jars"
    if not (jars / f"io.delta_{name}-{version}.jar").exists():
        return []
    return sorted(jars.glob("*.jar"))


def load_profile(name: str) -> dict:
    """A profile's YAML, with `extends:` merged in (the child wins, `conf` merged key by key)."""
    path = CONF_DIR / "spark" / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (CONF_DIR / "spark").glob("*.yaml"))
        raise ValueError(f"unknown Spark profile {name!r}; known: {known}")
    profile = yaml.safe_load(path.read_text()) or {}
    parent = profile.pop("extends", None)
    if parent is None:
        return profile
    merged = load_profile(parent)
    conf = {**merged.get("conf", {}), **profile.pop("conf", {})}
    return {**merged, **profile, "conf": conf}


def builder_conf(profile: dict, overrides: dict | None = None, level: str = "WARN") -> dict[str, str]:
    """Every `spark.*` setting the profile asks for, flags (`overrides`) last; at a quiet log `level`,
    the driver JVM gets QUIET_LOG4J unless the flags give it a log4j configuration of their own."""
    conf = {k: str(v) for k, v in profile.get("conf", {}).items()}
    if profile.get("delta_jars"):
        jars = cached_delta_jars()
        if jars:
            conf["spark.jars"] = ",".join(str(j) for j in jars)
        else:
            conf["spark.jars.packages"] = delta_artifact()
            conf["spark.jars.ivy"] = str(ivy_dir())
    conf.update({k: str(v) for k, v in (overrides or {}).items()})
    options = conf.get(DRIVER_JAVA_OPTIONS, "")
    if level.upper() in QUIET_LEVELS and "log4j2.configurationFile" not in options:
        # Read as the JVM starts, before setLogLevel can act: Spark's banner and Java stack traces stay out.
        conf[DRIVER_JAVA_OPTIONS] = f"{options} -Dlog4j2.configurationFile={QUIET_LOG4J.as_uri()}".strip()
    return conf


def spark_session(profile: str = "local", overrides: dict | None = None, app_name: str = "hcmrm",
                  log_level: str = "OFF") -> SparkSession:
    """Get or create the SparkSession for `profile`; `overrides` are `spark.*` keys from flags; `log_level`
    is the driver JVM's (OFF: a command's default, jobs.common.spark_log_level)."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Workers must run this interpreter (with torch, jieba, ...), not whatever python3 is on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    settings = load_profile(profile)
    builder = SparkSession.builder.appName(app_name)
    if settings.get("master"):
        builder = builder.master(settings["master"])
    level = log_level.upper()
    for key, value in builder_conf(settings, overrides, level).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(level)
    return spark


@dataclass(frozen=True)
class ArrowBatches:
    """What one Arrow batch into a job's Python workers may hold; the first bound reached ends the batch."""

    rows: int = 512  # rows (ads or videos, with their frames)
    pairs: int | None = None  # score only: pairs over all rows, so rows <= pairs // pairs_per_row
    bytes: int = 256 * 2**20  # the rows' Arrow bytes (frames dominate); a single row over it goes alone

    def __post_init__(self):
        if self.rows < 1 or (self.pairs is not None and self.pairs < 1):
            raise ConfigError(f"arrow_batch: rows and pairs must be >= 1, got rows={self.rows} pairs={self.pairs}")
        if not 2**20 <= self.bytes < MAX_ARROW_BATCH_BYTES:
            raise ConfigError(f"arrow_batch.bytes must be 1 MiB..2 GiB (Arrow's limit for one column), "
                              f"got {self.bytes}")

    def max_rows(self, pairs_per_row: int = 1) -> int:
        """Rows per batch: `rows`, fewer where rows of `pairs_per_row` pairs would pass `pairs`."""
        return self.rows if self.pairs is None else max(1, min(self.rows, self.pairs // pairs_per_row))


@contextlib.contextmanager
def arrow_batches(spark: SparkSession, limits: ArrowBatches, pairs_per_row: int = 1):
    """Arrow batches into the Python workers bounded by `limits` while the block runs. The job's bounds
    win: a value the Spark profile, spark-defaults or --conf set is not used (one warning line names it)
    and is set back afterwards, since what a batch may hold is the job's to know (frames, pairs)."""
    wanted = {ARROW_BATCH_ROWS: str(limits.max_rows(pairs_per_row)), ARROW_BATCH_BYTES: str(limits.bytes)}
    before = {key: spark.conf.get(key, None) for key in wanted}  # None: not set (Spark's default)
    for key, value in before.items():
        if value is not None and value != wanted[key]:
            log.warning("%s=%s from the Spark conf is not used: the job's arrow_batch wins (%s=%s)",
                        key, value, key, wanted[key])
    for key, value in wanted.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def main() -> None:
    """`python -m jobs.session`: resolve Delta's jars into the cache (the one step that needs the network)."""
    spark = spark_session("test")
    spark.range(1).count()
    spark.stop()
    jars = cached_delta_jars()
    if not jars:
        sys.exit(f"Delta jars were not cached under {ivy_dir()}")
    print(f"Delta jars cached in {ivy_dir() / 'jars'}: {len(jars)} files")


if __name__ == "__main__":
    main()
