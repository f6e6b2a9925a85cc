"""Settings resolve: defaults < conf/defaults.yaml < environment < flags; paths become absolute."""

from pathlib import Path

import pytest

from hcmrm.settings import Settings


def test_defaults_are_embedded_and_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("HCMRM_LAKE", "MLFLOW_TRACKING_URI", "HCMRM_ARTIFACT_ROOT", "HCMRM_MODEL_NAME", "HCMRM_SPARK_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    settings = Settings.load()
    assert settings.lake == str(tmp_path / "lake")
    assert settings.tracking_uri == f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert settings.artifact_root == str(tmp_path / "mlartifacts")
    assert (settings.model_name, settings.spark_profile) == ("hcmrm", "local")


def test_environment_beats_file_and_flags_beat_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HCMRM_LAKE", "s3a://bucket/lake")
    monkeypatch.setenv("HCMRM_MODEL_NAME", "from-env")
    settings = Settings.load({"model_name": "from-flag", "lake": None})
    assert settings.lake == "s3a://bucket/lake"  # URIs are kept as they are
    assert settings.model_name == "from-flag"
    assert settings.table("relevance_scores") == "s3a://bucket/lake/relevance_scores"


def test_unknown_keys_are_an_error_naming_where_they_came_from(tmp_path):
    conf = tmp_path / "defaults.yaml"
    conf.write_text("lake: x\nlaek: y\n")
    with pytest.raises(ValueError, match=f"unknown key 'laek' in {conf}; known: "):
        Settings.load(conf_file=Path(conf))
    with pytest.raises(ValueError, match="unknown key 'model' in flags"):
        Settings.load({"model": "m"})
