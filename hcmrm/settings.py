"""Where things live: the Delta lake, MLflow, the model name, the Spark profile.

Each setting resolves, last one winning: the dataclass default, `conf/defaults.yaml`, an
environment variable, a command-line flag (`Settings.load(overrides=...)`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from hcmrm import config

PACKAGE_DIR = Path(__file__).resolve().parent
# conf/ sits at the top of the checkout; the wheel maps it into the package (pyproject), so an installed
# hcmrm finds it beside its modules and a checkout finds it one level up.
CONF_DIR = next(d for d in (PACKAGE_DIR / "conf", PACKAGE_DIR.parent / "conf") if d.is_dir())
SHIPPED_MODEL_DIR = PACKAGE_DIR / "models" / "kuake-small-match"  # the trained model the demo starts from (MODEL_CARD.md)
SAMPLE_DIR = PACKAGE_DIR / "sample"  # the sample lake's Parquet files (SOURCE.md says where rows come from)

_ENV = {
    "lake": "HCMRM_LAKE",
    "tracking_uri": "MLFLOW_TRACKING_URI",
    "artifact_root": "HCMRM_ARTIFACT_ROOT",
    "model_name": "HCMRM_MODEL_NAME",
    "spark_profile": "HCMRM_SPARK_PROFILE",
}


def _is_uri(path: str) -> bool:
    return "://" in path or path.startswith("file:")


def _absolute(path: str) -> str:
    return path if _is_uri(path) else str(Path(path).expanduser().resolve())


@dataclass(frozen=True)
class Settings:
    lake: str = "lake"  # folder or URI holding one Delta table per sub-folder
    tracking_uri: str | None = None  # MLflow tracking URI; None = sqlite file beside the lake
    artifact_root: str = "mlartifacts"  # MLflow artifact folder for new experiments
    model_name: str = "hcmrm"  # registered model name in the MLflow registry
    spark_profile: str = "local"  # name of a YAML file in conf/spark

    @classmethod
    def load(cls, overrides: dict | None = None, conf_file: Path | None = None) -> "Settings":
        """`conf_file` (default conf/defaults.yaml), then the environment, then `overrides` (flags)."""
        env = {field: os.environ[var] for field, var in _ENV.items() if os.environ.get(var)}
        path = conf_file or CONF_DIR / "defaults.yaml"
        return config.load(cls, path, config.merge(env, overrides)).resolved()  # env names only known keys

    def resolved(self) -> "Settings":
        """Relative paths become absolute (MLflow needs an absolute sqlite URI)."""
        lake = _absolute(self.lake)
        tracking = self.tracking_uri or "sqlite:///" + str(Path("mlruns.db").resolve())
        return dataclasses.replace(self, lake=lake, tracking_uri=tracking, artifact_root=_absolute(self.artifact_root))

    def table(self, name: str) -> str:
        """The location of the Delta table `name` in the lake."""
        return f"{self.lake.rstrip('/')}/{name}"
