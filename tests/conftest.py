"""Shared fixtures: one local Spark session for the whole run, settings inside a temp folder."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def spark():
    from jobs.session import spark_session

    session = spark_session("test", app_name="hcmrm-tests")
    yield session
    session.stop()


@pytest.fixture
def settings(tmp_path):
    """Settings with the lake, the MLflow store and its artifacts under a fresh temp folder."""
    from hcmrm.settings import Settings

    return Settings(
        lake=str(tmp_path / "lake"),
        tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}",
        artifact_root=str(tmp_path / "mlartifacts"),
        model_name="hcmrm-test",
        spark_profile="test",
    )
