"""The MLflow model registry: log a saved model folder, register it, move `champion`.

A model version's source is the artifact folder written by `hcmrm.model.checkpoint.save_model`
(safetensors + config.json), so loading needs nothing but MLflow's artifact download: fetch it
back with `hcmrm.tracking.model_uri.resolve`.
"""

from __future__ import annotations

from pathlib import Path

from hcmrm.settings import Settings
from hcmrm.tracking.model_uri import CHAMPION
from hcmrm.tracking.store import configure

MODEL_ARTIFACT = "model"


def log_model_dir(model_dir: str | Path, artifact_path: str = MODEL_ARTIFACT) -> str:
    """Upload a saved model folder to the active run, file by file (regular files only, under the size cap:
    hcmrm.model.folder.model_files); returns its artifact URI. A failure or a stop part way removes what
    was uploaded, so no half model stays in the artifacts."""
    import mlflow

    from hcmrm.model.folder import model_files

    model_dir = Path(model_dir)
    files = model_files(model_dir)
    try:
        for path in files:
            parent = path.parent.relative_to(model_dir).as_posix()
            mlflow.log_artifact(str(path), artifact_path=artifact_path if parent == "." else f"{artifact_path}/{parent}")
    except BaseException:
        _discard_artifacts(mlflow.get_artifact_uri(artifact_path))
        raise
    return mlflow.get_artifact_uri(artifact_path)


def _discard_artifacts(artifact_uri: str) -> None:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    try:
        get_artifact_repository(artifact_uri).delete_artifacts()
    except Exception:  # a store that cannot delete keeps the partial folder; the run's status says it is not whole
        pass


def register_version(settings: Settings, run_id: str, source: str, description: str = ""):
    """Register the artifact folder `source` (logged by run `run_id`) as a new model version."""
    mlflow = configure(settings)
    client = mlflow.MlflowClient()
    if not client.search_registered_models(filter_string=f"name = '{settings.model_name}'"):
        client.create_registered_model(settings.model_name)
    return client.create_model_version(settings.model_name, source=source, run_id=run_id, description=description)


def set_alias(settings: Settings, version: str | int, alias: str = CHAMPION) -> None:
    configure(settings).MlflowClient().set_registered_model_alias(settings.model_name, alias, str(version))


def current_champion(settings: Settings):
    """The champion ModelVersion, or None when no version holds the alias yet."""
    mlflow = configure(settings)
    try:
        return mlflow.MlflowClient().get_model_version_by_alias(settings.model_name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None
