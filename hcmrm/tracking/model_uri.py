"""One resolver for every way a model is named, and the champion alias.

    models:/<name>@<alias>      a registered version by alias (production scores `champion_uri(name)`)
    models:/<name>/<version>    a registered version by number
    runs:/<run_id>/<path>       a folder an MLflow run logged (e.g. runs:/<id>/model)
    <folder>                    a local model folder (config.json + model.safetensors), or one holding it in model/

`resolve` turns any of them into a local model folder, plus the registered ModelVersion when the
URI names one (lineage for relevance_scores). A name that leads nowhere fails with one line that
says which URI and which tracking store, and how to name another store. A sqlite store that does
not exist is reported as such, before MLflow would create an empty one in the current folder.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from hcmrm.errors import ModelError, UsageError
from hcmrm.settings import Settings
from hcmrm.tracking.store import configure

CHAMPION = "champion"  # the alias production scores with; only the registry gate moves it
MODELS, RUNS = "models:/", "runs:/"
MODEL_FILE = "config.json"  # what marks a model folder (hcmrm.model.checkpoint.save_model writes it)


class ModelNotFoundError(ModelError, FileNotFoundError):
    """The URI names no model (unknown alias, version or run, or no model folder there): exit code 4."""


@dataclass(frozen=True)
class ResolvedModel:
    uri: str  # as asked for
    folder: Path  # a local model folder
    version: object | None = None  # the registered mlflow ModelVersion when the URI is models:/, else None


def champion_uri(model_name: str) -> str:
    return f"{MODELS}{model_name}@{CHAMPION}"


def version_uri(model_name: str, version: str | int) -> str:
    return f"{MODELS}{model_name}/{version}"


def is_mlflow_uri(uri: str) -> bool:
    return str(uri).startswith((MODELS, RUNS))


def registered_version(settings: Settings, uri: str):
    """The ModelVersion behind models:/<name>@<alias> or models:/<name>/<version>."""
    if not uri.startswith(MODELS):
        raise UsageError(f"expected models:/<name>@<alias> or models:/<name>/<version>, got {uri!r}")
    name, alias, version = _split_models_uri(uri)
    _check_store_exists(uri, settings)
    mlflow = configure(settings)
    client = mlflow.MlflowClient()
    try:
        return client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except mlflow.exceptions.MlflowException as err:
        raise _not_found(uri, settings, err) from None


def resolve(uri: str | Path, settings: Settings | None = None, dst: str | Path | None = None) -> ResolvedModel:
    """A local model folder for `uri` (downloaded under `dst`, a temp folder by default, for MLflow URIs)."""
    uri = str(uri)
    if not is_mlflow_uri(uri):
        return ResolvedModel(uri, _local_folder(uri))
    if settings is None:
        raise ValueError(f"{uri}: an MLflow URI needs the tracking settings")
    _check_store_exists(uri, settings)
    version = registered_version(settings, uri) if uri.startswith(MODELS) else None
    mlflow = configure(settings)
    dst = Path(dst or tempfile.mkdtemp(prefix="hcmrm-model-"))
    try:  # a version's source is the artifact folder its run logged
        local = mlflow.artifacts.download_artifacts(artifact_uri=version.source if version else uri, dst_path=str(dst))
    except (mlflow.exceptions.MlflowException, OSError) as err:
        raise _not_found(uri, settings, err) from None
    folder = Path(local)
    if not (folder / MODEL_FILE).is_file():
        raise ModelNotFoundError(f"{uri} in the tracking store {settings.tracking_uri} is not a model folder "
                                 f"(no {MODEL_FILE})")
    return ResolvedModel(uri, folder, version)


def _split_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """(name, alias, version) of a models:/ URI, exactly one of alias and version set."""
    ref = uri[len(MODELS):]
    if "@" in ref:
        name, alias = ref.split("@", 1)
        if name and alias:
            return name, alias, None
    else:
        name, _, version = ref.partition("/")
        if name and version.isdigit():
            return name, None, version
    raise UsageError(f"model URI {uri!r} is neither models:/<name>@<alias> nor models:/<name>/<version>",
                     hint="write it as models:/hcmrm@champion or models:/hcmrm/3 (or pass --model-version)")


def _local_folder(path: str) -> Path:
    for folder in (Path(path), Path(path) / "model"):  # a model folder, or a training run's folder
        if (folder / MODEL_FILE).is_file():
            return folder
    raise ModelNotFoundError(f"no model folder at {path} (no {MODEL_FILE} there or in model/), and it is not a "
                             f"models:/ or runs:/ URI")


def sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///<path>` tracking URI; None for any other kind of store."""
    prefix = "sqlite:///"
    return Path(tracking_uri[len(prefix):]) if tracking_uri.startswith(prefix) and tracking_uri != prefix else None


def _check_store_exists(uri: str, settings: Settings) -> None:
    database = sqlite_file(settings.tracking_uri)
    if database is not None and not database.exists():
        raise _with_store_hint(ModelNotFoundError(
            f"model {uri} not found in the tracking store {settings.tracking_uri}: no such store (the default is "
            f"mlruns.db in the current folder)"))


def _not_found(uri: str, settings: Settings, err: Exception) -> ModelNotFoundError:
    lines = str(err).strip().splitlines()
    why = (lines[0] if lines else type(err).__name__)[:300]  # MLflow messages run over many lines
    error = ModelNotFoundError(f"model {uri} not found in the tracking store {settings.tracking_uri}: {why}")
    return _with_store_hint(error)


def _with_store_hint(error: ModelNotFoundError) -> ModelNotFoundError:
    error.hint = ("look in another store with --tracking-uri sqlite:////<project folder>/mlruns.db (or "
                  "MLFLOW_TRACKING_URI), or name a model folder instead")
    return error
