"""The model a scoring job runs, from the registry to the executors: resolved to one version, downloaded and
checked on the driver before Spark starts, packed and shipped to the executors, removed at the end.

    settings, config, spark, model, experiment_id = prepare_scoring(args, "score")
    try: ...score with `model` (a udfs.score.ModelRef)...
    finally: release_model(model)
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import logging
import shutil
import tempfile
import uuid
import zipfile
from pathlib import Path

from PIL import Image
from pyspark.sql import SparkSession

from hcmrm.config import load
from hcmrm.errors import ModelError
from hcmrm.model.folder import model_files
from hcmrm.scoring import AdPairs, Scorer, ScoringConfig
from hcmrm.settings import Settings
from jobs.arguments import model_uri_from_args
from jobs.common import settings_from_args, spark_from_args
from jobs.scoring_config import ScoreJobConfig
from udfs.score import ModelRef

log = logging.getLogger("hcmrm.model_shipping")


def pack_folder(folder: Path, archive: Path) -> Path:
    """`folder`'s files into the zip `archive`, paths relative to `folder` (so it unpacks as the folder);
    a link or special file in it is refused (hcmrm.model.folder.model_files).
    Stored, not deflated: weights barely compress and a big model would take long to deflate."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for path in model_files(folder):  # regular files only, under the size cap
            zf.write(path, path.relative_to(folder).as_posix())
    return archive


def resolve_model(settings: Settings, model_uri: str, engine: ScoringConfig) -> ModelRef:
    """Resolve `model_uri` to one version, download it and score the canary with it (check_model), all
    before Spark starts: a wrong URI, a corrupt checkpoint or a NaN model fails in seconds, in one line."""
    from hcmrm.tracking.model_uri import resolve

    workdir = Path(tempfile.mkdtemp(prefix="hcmrm-model-"))
    try:
        resolved = resolve(model_uri, settings, dst=workdir / "download")
        version, folder = resolved.version, resolved.folder
        if version is None:  # every output row names the version that scored it
            raise ValueError(f"score needs a registered model (models:/<name>@<alias> or models:/<name>/<version>), "
                             f"got {model_uri}")
        check_model(folder, engine)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    log.info("model %s -> %s version %s (run %s)", model_uri, version.name, version.version, version.run_id)
    return ModelRef(version.name, str(version.version), version.run_id or "", str(folder), None, str(workdir))


def canary_batch() -> list[AdPairs]:
    """A few pairs built here, needing no input: an ad with a frame (the vision tower runs) and a text-only one."""
    frame = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 40, 40)).save(frame, format="PNG")
    return [AdPairs("canary-frames", "红色连衣裙 夏季新款 显瘦", [frame.getvalue()], ["连衣裙", "红色长裙", "手机"]),
            AdPairs("canary-text", "考研英语 网课 名师", [], ["英语网课"])]


def check_model(folder: str | Path, engine: ScoringConfig) -> None:
    """Load the model on the driver's CPU and score the canary batch: a checkpoint that does not load
    (ModelError) or gives non-finite probabilities (the engine's ModelError) stops the job here."""
    scorer = Scorer.from_dir(folder, engine, "cpu")
    for result in scorer.score(canary_batch()):
        if result.reason is not None:
            raise ModelError(f"the model cannot score the canary batch: {result.reason}")


def ship_model(spark: SparkSession, model: ModelRef) -> ModelRef:
    """The model folder packed and shipped to the executors as an archive (addFile refuses folders on any
    master but local; addArchive works on all of them)."""
    # A unique name: Spark refuses two different archives under one name in one application.
    name = f"hcmrm-{model.name}-v{model.version}-{uuid.uuid4().hex[:8]}.zip"
    spark.sparkContext.addArchive(str(pack_folder(Path(model.local_dir), Path(model.workdir) / name)))
    # An executor fetches an added archive at its next task: one task now, while the file exists, so a job
    # that fails before scoring (and removes the file) does not leave the session's executors to fail on it.
    spark.sparkContext.parallelize([0], 1).foreach(lambda _: None)
    return dataclasses.replace(model, archive=name)


def release_model(model: ModelRef) -> None:
    """Remove the driver's temp copies of the model (the download and the archive)."""
    shutil.rmtree(model.workdir or model.local_dir, ignore_errors=True)


def prepare_scoring(args: argparse.Namespace, command: str):
    """(settings, job config, spark, model, experiment id): what score and backfill set up once. The model
    is resolved and checked before Spark starts (seconds), then shipped; a failure after it removes it."""
    from hcmrm.tracking.store import use_experiment

    settings = settings_from_args(args)
    config = load(ScoreJobConfig, args.job_config, {
        "device": args.device, "require_input": getattr(args, "require_input", None),
        "carry_over_days": 0 if getattr(args, "full_rescore", False) else None})
    model = resolve_model(settings, model_uri_from_args(args, settings), config.engine)
    try:
        spark = spark_from_args(args, settings, command)
        model = ship_model(spark, model)
        experiment_id = use_experiment(settings, config.experiment)
    except BaseException:
        release_model(model)
        raise
    return settings, config, spark, model, experiment_id
