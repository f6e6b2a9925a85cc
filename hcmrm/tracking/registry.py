"""The MLflow model registry: log a saved model folder, register it, move `champion`, fetch it back.

A model version's source is the artifact folder written by `hcmrm.model.checkpoint.save_model`
(safetensors + config.json), so loading needs nothing but MLflow's artifact download.
"""

from __future__ import annotations

from pathlib import Path

from hcmrm.settings import Settings
from hcmrm.tracking.runs import temp_dir
from hcmrm.tracking.store import configure, resolve_model_version

CHAMPION = "champion"
MODEL_ARTIFACT = "model"


def log_model_dir(model_dir: str | Path, artifact_path: str = MODEL_ARTIFACT) -> str:
    """Upload a saved model folder to the active run; returns its artifact URI."""
    import mlflow

    mlflow.log_artifacts(str(model_dir), artifact_path=artifact_path)
    return mlflow.get_artifact_uri(artifact_path)


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


def download_model(settings: Settings, model_uri: str, dst: str | Path | None = None):
    """Fetch the model folder behind `model_uri`; returns (local folder, ModelVersion)."""
    version = resolve_model_version(settings, model_uri)
    mlflow = configure(settings)
    dst = Path(dst) if dst else temp_dir("hcmrm-model-")  # removed when the command ends (hcmrm.tracking.runs)
    local = mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(dst))
    return Path(local), version


def load_registered(settings: Settings, model_uri: str, dst: str | Path | None = None):
    """The model behind `model_uri`, ready for inference, and its ModelVersion.

    `model_uri` is `models:/<name>@<alias>`, `models:/<name>/<version>`, or a local folder written by
    `hcmrm.model.checkpoint.save_model` (then the version is None). The model is returned in eval mode.
    """
    from hcmrm.model.checkpoint import load_model

    if model_uri.startswith("models:/"):
        folder, version = download_model(settings, model_uri, dst)
    else:
        folder, version = Path(model_uri), None
        if not folder.is_dir():
            raise FileNotFoundError(f"model {model_uri!r} is neither a models:/ URI nor a local model folder")
    model = load_model(folder)
    model.eval()
    return model, version
