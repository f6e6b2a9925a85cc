"""Shipping the model to executors: the archive unpacks as the model folder; temp files go away."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from jobs.model_shipping import pack_folder, release_model
from udfs.score import ModelRef


def test_pack_folder_unpacks_as_the_same_folder(tmp_path):
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "sub" / "weights.bin").write_bytes(b"\x00\x01" * 100)
    archive = pack_folder(folder, tmp_path / "m.zip")
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist()) == ["config.json", "sub/weights.bin"]  # relative: no parent folder inside
        zf.extractall(tmp_path / "out")
    assert (tmp_path / "out" / "sub" / "weights.bin").read_bytes() == b"\x00\x01" * 100


def test_release_model_removes_the_download_and_the_archive(tmp_path):
    workdir = tmp_path / "hcmrm-model-x"
    (workdir / "download" / "model").mkdir(parents=True)
    (workdir / "m.zip").write_bytes(b"zip")
    release_model(ModelRef("m", "1", "run", str(workdir / "download" / "model"), "m.zip", str(workdir)))
    assert not workdir.exists()


@pytest.mark.spark
def test_resolve_model_ships_an_archive_that_tasks_load_and_cleans_up(spark, settings, tmp_path):
    from hcmrm.scoring import ScoringConfig
    from jobs.model_shipping import resolve_model, ship_model
    from tests.jobs.test_score import register_tiny_model

    register_tiny_model(settings, tmp_path)
    model = ship_model(spark, resolve_model(settings, f"models:/{settings.model_name}@champion", ScoringConfig()))
    try:
        assert model.archive.endswith(".zip") and Path(model.workdir, model.archive).is_file()
        # In a task the folder is the unpacked archive, not the driver's download.
        seen = spark.sparkContext.parallelize([0], 1).map(lambda _: model.folder()).collect()[0]
        assert seen != model.local_dir and Path(seen, "config.json").is_file()
    finally:
        release_model(model)
    assert not Path(model.workdir).exists()


def test_check_model_scores_the_canary_and_refuses_a_nan_model_without_spark(tmp_path):
    from hcmrm.errors import ModelError
    from hcmrm.model.checkpoint import save_model
    from hcmrm.model.network import build_model
    from hcmrm.scoring import ScoringConfig
    from jobs.model_shipping import canary_batch, check_model
    from tests.hcmrm.test_scoring import save_nan_model

    assert any(ad.frames for ad in canary_batch()) and any(not ad.frames for ad in canary_batch())
    save_model(build_model("tiny"), tmp_path / "good")
    check_model(tmp_path / "good", ScoringConfig())  # a sound model passes
    with pytest.raises(ModelError, match="non-finite probabilities"):
        check_model(save_nan_model(tmp_path / "nan"), ScoringConfig())


def test_pack_folder_ships_regular_files_only(tmp_path):
    from hcmrm.errors import ModelError

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "secrets").symlink_to("/etc/passwd")
    with pytest.raises(ModelError, match="secrets is a symbolic link, not a regular file"):
        pack_folder(folder, tmp_path / "m.zip")
