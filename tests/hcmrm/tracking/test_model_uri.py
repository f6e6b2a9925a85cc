"""Every way of naming a model resolves to a local model folder (+ its registered version), or fails in one line."""

import json

import pytest

from hcmrm.errors import UsageError
from hcmrm.tracking import registry
from hcmrm.tracking import store as tracking
from hcmrm.tracking.model_uri import (
    CHAMPION,
    ModelNotFoundError,
    champion_uri,
    registered_version,
    resolve,
    version_uri,
)


def save_folder(path, name):
    """A stand-in model folder: resolving only needs its config.json."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"name": name}))
    return path


@pytest.fixture
def registered(settings, tmp_path):
    """Two versions of the model, v2 the champion: (settings, run id of v1, run id of v2)."""
    mlflow = tracking.configure(settings)
    tracking.use_experiment(settings, "model-uri-test")
    runs = []
    for name in ("first", "second"):
        with mlflow.start_run() as run:
            source = registry.log_model_dir(save_folder(tmp_path / name, name))
        registry.register_version(settings, run.info.run_id, source)
        runs.append(run.info.run_id)
    registry.set_alias(settings, 2)
    return settings, runs[0], runs[1]


def name_in(folder) -> str:
    return json.loads((folder / "config.json").read_text())["name"]


def test_the_uris_production_and_the_gate_use():
    assert champion_uri("hcmrm") == f"models:/hcmrm@{CHAMPION}" == "models:/hcmrm@champion"
    assert version_uri("hcmrm", 3) == "models:/hcmrm/3"


def test_alias_version_and_run_uris_resolve_to_downloaded_folders(registered, tmp_path):
    settings, run1, run2 = registered
    by_alias = resolve(champion_uri(settings.model_name), settings, tmp_path / "a")
    assert name_in(by_alias.folder) == "second" and str(by_alias.version.version) == "2"
    assert by_alias.version.run_id == run2  # lineage: the run that logged the scoring model
    by_number = resolve(version_uri(settings.model_name, 1), settings, tmp_path / "b")
    assert name_in(by_number.folder) == "first" and by_number.version.run_id == run1
    by_run = resolve(f"runs:/{run1}/model", settings, tmp_path / "c")
    assert name_in(by_run.folder) == "first" and by_run.version is None  # a run's folder is not a version


def test_a_local_model_folder_or_a_run_folder_holding_one(tmp_path):
    model = save_folder(tmp_path / "m", "local")
    assert resolve(model).folder == model and resolve(model).version is None
    run_folder = tmp_path / "runs" / "finetune"
    save_folder(run_folder / "model", "trained")
    assert resolve(str(run_folder)).folder == run_folder / "model"


@pytest.mark.parametrize("uri", ["models:/{name}@challenger", "models:/{name}/7", "models:/nobody@champion",
                                 "runs:/0123456789abcdef0123456789abcdef/model"])
def test_a_uri_that_names_nothing_fails_in_one_line_naming_it_and_the_store(registered, uri):
    settings, _, _ = registered
    uri = uri.format(name=settings.model_name)
    with pytest.raises(ModelNotFoundError) as err:
        resolve(uri, settings)
    message = str(err.value)
    assert "\n" not in message and uri in message and settings.tracking_uri in message


def test_a_run_folder_that_is_no_model_and_malformed_uris(registered, tmp_path):
    settings, _, _ = registered
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("not a model")
    mlflow = tracking.configure(settings)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(notes), artifact_path="notes")
    with pytest.raises(ModelNotFoundError, match="not a model folder"):
        resolve(f"runs:/{run.info.run_id}/notes", settings, tmp_path / "d")
    with pytest.raises(UsageError, match="neither"):
        registered_version(settings, f"models:/{settings.model_name}/latest")
    with pytest.raises(ValueError, match="needs the tracking settings"):
        resolve(champion_uri("hcmrm"))
    with pytest.raises(ModelNotFoundError, match="no model folder at"):
        resolve(tmp_path / "nowhere")
