"""Spark adapter of the scoring engine: mapInArrow over ad-major rows, one row per ad.

Each input row is one ad: `ad_id`, the video's `video_text` (built upstream, table `video_texts`:
no text is built here), `frames` array<binary>, `pairs` array<struct<query, ...>> (the ad's queries
with their per-pair columns), and any other column (per-ad dimensions such as advertiser). Frame
bytes cross into Python once per ad. Each output row is one pair: the ad's columns (minus video
content), the pair's fields, the four probabilities, score, label, and a `reason` when the pair
could not be scored.

mapInArrow rather than mapInPandas: the rows carry nested lists and binary frames, which Arrow
flattens without building a Python object per pair. The model is loaded once per Python worker
(Spark reuses workers) on the GPU Spark assigned to the task, else on the CPU. Where executors have
GPUs, only the scoring stage asks for one (a stage-level ResourceProfile): the stages around it keep
their task per core.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark import SparkConf
from pyspark.resource import ExecutorResourceRequests, ResourceProfile, ResourceProfileBuilder, TaskResourceRequests
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import StructType

from hcmrm.scoring import AdPairs, Scorer, ScoringConfig
from hcmrm.tables import EMPTY_TEXT, PREDICTION, PROB_COLUMNS, SCORING_REJECTS

# Consumed by the scorer, not passed on. `frame_reason` (optional): the reject that the plan read from
# video_texts' record of the frames (jobs.scoring_plan.recorded_frame_reason); the frames then are not sent.
VIDEO_COLUMNS = ("video_text", "frames", "frame_reason")
PAIRS_COLUMN = "pairs"
# What scoring adds to each pair row: relevance_scores' prediction columns, the `reason` (null when
# scored, else why not) and the engine's encode count (on one row per Arrow batch, 0 on the others).
SCORED = PREDICTION.append(SCORING_REJECTS.schema.field("reason")).append(pa.field("vision_encodes", pa.int32()))


def content_fingerprint(video_text: Column, frames: Column) -> Column:
    """A stable hash (hex SHA-256) of what score_batch hands the engine for one video: its text (null read
    as "", as score_batch does) and each frame's bytes in order (null frames as null: the engine rejects
    those). pseudo-queries computes it once, beside the video's text in `video_texts`, so scoring keys its
    carry-over without reading a frame."""
    no_frames = F.array().cast("array<binary>")
    each = F.transform(F.coalesce(frames, no_frames), lambda f: F.coalesce(F.sha2(f, 256), F.lit("null")))
    text = F.sha2(F.coalesce(video_text, F.lit("")), 256)
    return F.sha2(F.concat_ws("|", text, F.array_join(each, ",")), 256)  # hex parts: no ambiguity


def ad_fingerprint(content: Column, salt: str) -> Column:
    """An ad's video content_fingerprint with `salt`, the settings that decide whether the ad is scored at
    all. Equal fingerprints, equal query and model version: equal model input, so equal scores (incremental
    scoring reuses them)."""
    return F.sha2(F.concat_ws("|", F.lit(salt), content), 256)


@dataclass(frozen=True)
class ModelRef:
    """The one model version the driver resolved; workers load it from `folder()`."""

    name: str  # registered model name
    version: str  # registered model version
    run_id: str  # the MLflow run that logged the model
    local_dir: str  # the model folder downloaded on the driver
    archive: str | None = None  # file name of the folder packed and shipped with SparkContext.addArchive
    workdir: str | None = None  # the driver's temp folder (download + archive), removed after the job

    def folder(self) -> str:
        """The unpacked archive where this process has one (executors, and the driver once Spark unpacked
        it), else the driver's folder: executors of any master never read the driver's disk."""
        if self.archive:
            from pyspark import SparkFiles

            try:  # Spark unpacks an archive into SparkFiles' root, in a folder named like the file
                shipped = SparkFiles.get(self.archive)
            except Exception:  # no SparkFiles root outside a task or a SparkContext
                shipped = None
            if shipped and os.path.isdir(shipped):
                return shipped
        if os.path.isdir(self.local_dir):
            return self.local_dir
        raise FileNotFoundError(f"model {self.name} v{self.version}: archive {self.archive} is not unpacked on this "
                                f"worker and the driver's folder {self.local_dir} is not here")


# --- one model per Python worker ----------------------------------------------------------------

_WORKER: dict = {}  # {"key": (model folder, version, device), "scorer": Scorer}: the worker's one model


def cuda_ordinal(address: str, visible: str | None) -> int:
    """torch's index of the GPU that Spark's discovery script named `address`. Where the executor narrowed
    what CUDA sees (CUDA_VISIBLE_DEVICES, as YARN, Kubernetes and TorchDistributor do), torch numbers the
    visible GPUs from 0, so the address is looked up in that list."""
    if not visible:
        return int(address)
    names = [name.strip() for name in visible.split(",") if name.strip()]
    if address not in names:
        raise RuntimeError(f"Spark gave this task GPU {address}, which CUDA_VISIBLE_DEVICES={visible} hides "
                           f"from torch: the discovery script and the executor's environment disagree")
    return names.index(address)


def task_resources() -> tuple[list[str], int]:
    """(the GPU addresses Spark assigned to this task, the task's cpus); ([], 1) outside a task."""
    from pyspark import TaskContext

    context = TaskContext.get()
    if context is None:
        return [], 1
    gpus = context.resources().get("gpu")
    return (list(gpus.addresses) if gpus is not None else []), max(1, context.cpus())


def task_device(mode: str = "auto"):
    """The GPU Spark assigned to this task; with no assignment cuda:0 if CUDA exists; else the CPU."""
    import torch

    if mode == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if mode == "cuda":
            raise RuntimeError("device 'cuda' asked for but torch sees no CUDA device on this worker")
        return torch.device("cpu")
    gpus, _ = task_resources()
    if gpus:
        return torch.device("cuda", cuda_ordinal(gpus[0], os.environ.get("CUDA_VISIBLE_DEVICES")))
    return torch.device("cuda", 0)  # local mode: Spark assigns no task resources


def worker_config(config: ScoringConfig, device_type: str, cpus: int) -> ScoringConfig:
    """The engine's threads from the task's cpus where the config leaves them open: torch gets the task's
    cpus; on a GPU the prepare threads too (at most 8), on CPU none (Spark already runs a task per core)."""
    torch_threads = config.torch_threads or cpus
    prepare = config.prepare_threads
    if prepare is None:
        prepare = 0 if device_type == "cpu" else min(8, cpus)
    return replace(config, torch_threads=torch_threads, prepare_threads=prepare)


def worker_scorer(ref: ModelRef, config: ScoringConfig, device_mode: str = "auto") -> Scorer:
    """This worker's Scorer, loaded on first use and kept while the model and device stay the same."""
    import torch

    device = task_device(device_mode)
    gpus, cpus = task_resources()
    config = worker_config(config, device.type, cpus)
    key = (ref.local_dir, ref.version, str(device), config)
    if _WORKER.get("key") != key:
        _WORKER.clear()  # one model per worker: drop any previous one before loading
        torch.set_num_threads(config.torch_threads)  # on a GPU too: torch would take every core of the host
        _WORKER["scorer"] = Scorer.from_dir(ref.folder(), config, device)
        _WORKER["key"] = key
        print(placement(ref, device, gpus, cpus, config), file=sys.stderr, flush=True)  # the executor's log
    return _WORKER["scorer"]


def placement(ref: ModelRef, device, gpus: list[str], cpus: int, config: ScoringConfig) -> str:
    """One line for the executor's log: where this worker put the model, from which task resources."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if gpus:
        try:
            ordinal = f"cuda ordinal {cuda_ordinal(gpus[0], visible)}"
        except RuntimeError as err:
            ordinal = str(err)
        where = f"task GPU {gpus[0]} -> {ordinal} (CUDA_VISIBLE_DEVICES={visible})"
    else:
        where = "no task GPU"
    return (f"hcmrm scoring worker: {ref.name} v{ref.version} on {device}; {where}; task cpus {cpus}: "
            f"{config.torch_threads} torch threads, {config.prepare_threads} prepare threads")


def scoring_profile(conf: SparkConf) -> ResourceProfile | None:
    """The scoring stage's task resources where executors have GPUs (`spark.executor.resource.gpu.amount`):
    one GPU and the executor's cores per GPU, so the stage runs one task per GPU while the others keep a
    task per core. None on CPU executors and in local mode (Spark schedules no resources there)."""
    gpus = float(conf.get("spark.executor.resource.gpu.amount", "0") or 0)
    if gpus <= 0 or conf.get("spark.master", "local").startswith("local"):
        return None
    cores = int(conf.get("spark.executor.cores", "1"))
    builder = ResourceProfileBuilder().require(TaskResourceRequests().cpus(max(1, cores // int(gpus))).resource("gpu", 1))
    if conf.get("spark.dynamicAllocation.enabled", "false") == "true":  # then Spark needs executors to start for it
        script = conf.get("spark.executor.resource.gpu.discoveryScript", "")
        vendor = conf.get("spark.executor.resource.gpu.vendor", "")
        builder.require(ExecutorResourceRequests().cores(cores).resource("gpu", int(gpus), script, vendor))
    return builder.build


# --- one Arrow batch of ads -> one Arrow batch of pairs ------------------------------------------


def output_schema(ad_schema: StructType) -> StructType:
    """The pair rows: ad-level columns, then the pair struct's fields, then the scores."""
    if PAIRS_COLUMN not in ad_schema.fieldNames():
        raise ValueError(f"ad rows need a `{PAIRS_COLUMN}` array<struct<query, ...>> column, got {ad_schema.simpleString()}")
    pair_fields = ad_schema[PAIRS_COLUMN].dataType.elementType.fields
    ad_fields = [f for f in ad_schema.fields if f.name not in (*VIDEO_COLUMNS, PAIRS_COLUMN)]
    return StructType(ad_fields + list(pair_fields) + from_arrow_schema(SCORED).fields)


def score_batch(batch: pa.RecordBatch, scorer: Scorer, require_text: bool = True) -> pa.RecordBatch:
    """Score every pair of the ads in `batch` (the ad-level contract above)."""
    names = batch.schema.names
    pairs = batch.column(names.index(PAIRS_COLUMN))
    flat = pc.list_flatten(pairs)  # StructArray, the pairs of ad 0, then ad 1, ...
    parent = pc.list_parent_indices(pairs)
    lengths = pc.fill_null(pc.list_value_length(pairs), 0).to_numpy(zero_copy_only=False)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    queries = flat.field("query").to_pylist()

    def column(name):
        return batch.column(names.index(name)).to_pylist() if name in names else [None] * batch.num_rows

    texts, frames, ad_ids, recorded = column("video_text"), column("frames"), column("ad_id"), column("frame_reason")

    n = len(flat)
    probs = np.full((n, len(PROB_COLUMNS)), np.nan)
    score = np.full(n, np.nan)
    reasons: list[str | None] = [None] * n
    to_score, where = [], []
    for i in range(batch.num_rows):
        a, b = int(starts[i]), int(starts[i] + lengths[i])
        text = texts[i] or ""
        if require_text and not text.strip():
            reasons[a:b] = [EMPTY_TEXT] * (b - a)
            continue
        if recorded[i] is not None:  # the engine's own reason for these frames, known upstream: none decoded
            reasons[a:b] = [recorded[i]] * (b - a)
            continue
        to_score.append(AdPairs(ad_ids[i], text, frames[i] or [], queries[a:b]))
        where.append((a, b))

    before = scorer.counters.vision_encodes
    for (a, b), result in zip(where, scorer.score(to_score)):
        if result.reason is not None:
            reasons[a:b] = [result.reason] * (b - a)
        else:
            probs[a:b] = result.probs
            score[a:b] = result.score
    encodes = np.zeros(n, dtype=np.int32)
    if n:
        encodes[0] = scorer.counters.vision_encodes - before

    rejected = np.array([r is not None for r in reasons], dtype=bool)
    label = np.where(rejected, 0, np.nan_to_num(probs).argmax(axis=1)).astype(np.int32)
    arrays, fields = [], []
    for name in names:  # ad-level columns, repeated for each of the ad's pairs
        if name not in (*VIDEO_COLUMNS, PAIRS_COLUMN):
            arrays.append(pc.take(batch.column(names.index(name)), parent))
            fields.append(batch.schema.field(name))
    for j in range(flat.type.num_fields):
        arrays.append(flat.field(j))
        fields.append(flat.type.field(j))
    string_type = batch.schema.field("ad_id").type if "ad_id" in names else pa.string()
    values = {**dict(zip(PROB_COLUMNS, probs.T)), "score": score, "label": label, "reason": reasons,
              "vision_encodes": encodes}
    for field in SCORED:
        kind = string_type if field.type == pa.string() else field.type  # strings as the batch sends them
        masked = rejected if field.name in PREDICTION.names else None  # a rejected pair has no prediction
        arrays.append(pa.array(values[field.name], type=kind, mask=masked))
        fields.append(pa.field(field.name, kind))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def score_ads(ad_rows: DataFrame, ref: ModelRef, config: ScoringConfig, device: str = "auto",
              require_text: bool = True) -> DataFrame:
    """Ad rows -> pair rows with scores (or a reason), via the engine on each worker."""

    def score_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        scorer = None
        for batch in batches:
            if batch.num_rows == 0:
                continue
            scorer = scorer or worker_scorer(ref, config, device)
            yield score_batch(batch, scorer, require_text)

    profile = scoring_profile(ad_rows.sparkSession.sparkContext.getConf())
    return ad_rows.mapInArrow(score_partition, output_schema(ad_rows.schema), profile=profile)
