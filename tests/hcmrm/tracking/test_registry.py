"""MLflow round trip on a temp sqlite store: log a run, register, alias `champion`, resolve it."""

from pathlib import Path

from hcmrm.tracking import registry

from hcmrm.tracking import store as tracking


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


def test_register_alias_and_resolve_champion(settings, tmp_path):
    run_a, source_a = _log_folder(settings, tmp_path, "a")
    run_b, source_b = _log_folder(settings, tmp_path, "b")
    v1 = registry.register_version(settings, run_a, source_a)
    v2 = registry.register_version(settings, run_b, source_b)
    assert (str(v1.version), str(v2.version)) == ("1", "2")
    assert registry.current_champion(settings) is None

    registry.set_alias(settings, v2.version)
    resolved = tracking.resolve_model_version(settings, tracking.champion_uri(settings))
    assert str(resolved.version) == "2" and resolved.run_id == run_b

    folder, version = registry.download_model(settings, f"models:/{settings.model_name}@champion", tmp_path / "dl")
    assert str(version.version) == "2"
    assert (Path(folder) / "config.json").read_text() == '{"name": "b"}'
    by_number = tracking.resolve_model_version(settings, f"models:/{settings.model_name}/1")
    assert by_number.run_id == run_a


def test_artifacts_land_in_the_configured_folder(settings, tmp_path):
    _, source = _log_folder(settings, tmp_path, "c")
    assert source.startswith(Path(settings.artifact_root).as_uri())
