"""MLflow set-up: the tracking store, experiments with an explicit artifact folder."""

from __future__ import annotations

import os
from pathlib import Path

from hcmrm.settings import Settings


def configure(settings: Settings):
    """Point MLflow at the settings' store, telemetry off; returns the mlflow module."""
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a progress bar per download on stderr
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return mlflow


def use_experiment(settings: Settings, name: str) -> str:
    """Create `name` (artifacts under settings.artifact_root/name) if needed, make it active; its id."""
    mlflow = configure(settings)
    found = mlflow.get_experiment_by_name(name)
    if found is None:
        location = Path(settings.artifact_root) / name if "://" not in settings.artifact_root else None
        artifact_location = location.as_uri() if location else f"{settings.artifact_root.rstrip('/')}/{name}"
        try:
            experiment_id = mlflow.create_experiment(name, artifact_location=artifact_location)
        except mlflow.exceptions.MlflowException:  # another job created it first (two jobs starting at once)
            found = mlflow.get_experiment_by_name(name)
            if found is None:
                raise
            experiment_id = found.experiment_id
    else:
        experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id
