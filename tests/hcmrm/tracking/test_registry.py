"""MLflow round trip on a temp sqlite store: log a run, register, move the alias `champion`."""

from pathlib import Path

from hcmrm.tracking import registry
from hcmrm.tracking import store as tracking
from hcmrm.tracking.model_uri import champion_uri, registered_version


def _log_folder(settings, tmp_path, text):
    folder = tmp_path / f"model-{text}"
    folder.mkdir()
    (folder / "config.json").write_text(f'{{"name": "{text}"}}')
    mlflow = tracking.configure(settings)
    tracking.use_experiment(settings, "registry-test")
    with mlflow.start_run() as run:
        mlflow.log_param("which", text)
        mlflow.log_metric("auc", 0.5)
        source = registry.log_model_dir(folder)
    return run.info.run_id, source


def test_register_versions_and_move_champion(settings, tmp_path):
    run_a, source_a = _log_folder(settings, tmp_path, "a")
    run_b, source_b = _log_folder(settings, tmp_path, "b")
    v1 = registry.register_version(settings, run_a, source_a)
    v2 = registry.register_version(settings, run_b, source_b)
    assert (str(v1.version), str(v2.version)) == ("1", "2")
    assert registry.current_champion(settings) is None

    registry.set_alias(settings, v2.version)
    assert str(registry.current_champion(settings).version) == "2"
    assert registered_version(settings, champion_uri(settings.model_name)).run_id == run_b
    registry.set_alias(settings, v1.version)
    assert registry.current_champion(settings).run_id == run_a


def test_artifacts_land_in_the_configured_folder(settings, tmp_path):
    _, source = _log_folder(settings, tmp_path, "c")
    assert source.startswith(Path(settings.artifact_root).as_uri())
