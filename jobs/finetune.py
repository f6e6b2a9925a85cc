"""finetune: graded (query, video, 0..3) pairs -> a fine-tuned HCMRM, registered, and gated to `champion`.

    hcmrm finetune [--train [MAP=]PATH ...] [--dev [MAP=]PATH] [--loss hierarchical_softmax|bce]
                   [--init runs/pretrain/model | runs:/<id>/model | models:/hcmrm/3]
                   [--train-conf conf/train/finetune.yaml] [--epochs N] [--steps N] [--lr X] [--seed N]
                   [--gate-metric auc] [--no-register] [--out runs/finetune]
    spark-submit jobs/finetune.py [same flags]
    torchrun --nproc-per-node 2 jobs/finetune.py --train train.jsonl --dev dev.jsonl ...   (gloo)
    hcmrm finetune --num-processes 2 ...          (the same through Spark's TorchDistributor, local mode)

Labeled pairs come from the lake's Delta table `labeled_pairs` (query, title, label, split; rows of
split `train` to train, `dev` to evaluate), or from --train/--dev: a Delta table, Parquet, a JSON
array or JSON lines, with `query`, a video text (`title` [+ `ocr_text`, `asr_text`] or `text`) or a
`video_id` (its text from `video_texts`, its frames from `videos`), optional `frames`, and
`label`/`relevant` 0..3, or on another scale read through a label map of the training YAML
(`--train qbqtc=v0/train.json`: `label_maps.qbqtc`; --train repeats, the sources train as one set).
A title [+ OCR/ASR] becomes the model's text as the pseudo-queries job builds `video_texts` (same
function, same settings: --text-conf). Rows that cannot be used are counted and logged to the
MLflow run (`rejects.json`), never silently dropped.

Each epoch ends with an evaluation on dev (AUC with label >= 2, Spearman, accuracy, per-query
NDCG), scored by the production engine (hcmrm.scoring.Scorer), as is the gate's. The model folder
is logged to the MLflow run (experiment `hcmrm-finetune`) and registered as a new version of the
model with its metrics; the alias `champion` moves to it only when it beats the
current champion on --gate-metric, measured on the same dev data; the decision is logged either way.
Prints one JSON line: run id, model version, metrics, gate decision.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from hcmrm.config import load, to_dict
from hcmrm.settings import CONF_DIR, Settings
from jobs.common import configure_logging, script_main, settings_from_args
from hcmrm.tables import VIDEO_TEXTS
from jobs.training import add_training_arguments, is_plain_file, launch, tracked_run, training_overrides
from jobs.pseudo_queries import CONF_FILE as TEXT_CONF

COMMAND = "finetune"
HELP = "fine-tune HCMRM on labeled pairs, evaluate, register in MLflow, move champion if better"

log = logging.getLogger(__name__)

CONF_FILE = CONF_DIR / "train" / "finetune.yaml"
EXPERIMENT = "hcmrm-finetune"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", action="append", metavar="[MAP=]PATH",
                        help="training pairs: Delta table, Parquet, JSON (default: the lake's labeled_pairs); repeat for "
                             "several sources; MAP= reads the labels through the training YAML's label_maps[MAP]")
    parser.add_argument("--dev", metavar="[MAP=]PATH",
                        help="dev pairs, same formats (default: the --train sources' rows of --dev-split)")
    parser.add_argument("--train-split", default="train", help="rows of this split train (when there is a split column)")
    parser.add_argument("--dev-split", default="dev", help="rows of this split evaluate")
    parser.add_argument("--videos", help="videos table for pairs given by video_id (default: the lake's videos)")
    parser.add_argument("--text-conf", type=Path, default=TEXT_CONF,
                        help=f"how a title [+ OCR/ASR] becomes the model's text (default {TEXT_CONF})")
    parser.add_argument("--loss", choices=("hierarchical_softmax", "bce"), help="default: the training YAML's")
    parser.add_argument("--init", help="start from a model folder, a checkpoint root, runs:/.../model or models:/...")
    parser.add_argument("--limit", type=int, help="train on at most this many pairs (a quick run)")
    add_training_arguments(parser, CONF_FILE)
    parser.add_argument("--gate-metric", choices=("auc", "spearman", "accuracy", "ndcg"), help="metric of the gate")
    parser.add_argument("--no-register", action="store_true", help="log the run, but register no model version")
    parser.add_argument("--out", type=Path, help="run folder: checkpoints and the model (default runs/finetune)")
    parser.add_argument("--num-processes", type=int, help="train with N processes through Spark's TorchDistributor")


def load_config(args: argparse.Namespace):
    from hcmrm.train.finetune import FinetuneConfig

    flags = {**training_overrides(args), "loss": args.loss, "gate_metric": args.gate_metric}
    return load(FinetuneConfig, args.train_conf, flags)


# --- read ---------------------------------------------------------------------------------------


def with_video_text(labeled, videos, video_texts):
    """Pairs given by video_id get their video's `text` (from video_texts, as scoring reads it) and frames,
    of the video's latest dt; a transform.

    A pair whose video or text is unknown keeps a null text, and is rejected downstream with that reason.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if "title" in labeled.columns or "text" in labeled.columns or "video_id" not in labeled.columns:
        return labeled
    latest = Window.partitionBy("video_id").orderBy(F.col("dt").desc())
    frames = ["frames"] if "frames" in videos.columns else []
    newest = videos.withColumn("_n", F.row_number().over(latest)).where("_n = 1").select("video_id", "dt", *frames)
    texts = video_texts.select("video_id", "dt", F.col("video_text").alias("text"))
    return labeled.join(newest.join(texts, ["video_id", "dt"], "left").drop("dt"), "video_id", "left")


def read_frame(path: str | None, args: argparse.Namespace, settings: Settings):
    """One labeled source as pandas: a file directly, a Delta table through Spark."""
    from hcmrm.train.labeled_data import read_records

    path = path or settings.table("labeled_pairs")
    if is_plain_file(path):
        return read_records(path)
    from jobs.common import spark_from_args
    from jobs.tables import is_delta_table, read_table

    spark = spark_from_args(args, settings, COMMAND)
    if "://" not in path and not Path(path).exists():
        raise SystemExit(f"no labeled pairs at {path}: run `hcmrm build-lake`, or pass --train FILE")
    df = read_table(spark, path)
    videos_path, texts_path = args.videos or settings.table("videos"), settings.table(VIDEO_TEXTS.name)
    if "video_id" in df.columns and "title" not in df.columns and "text" not in df.columns:
        if not (is_delta_table(spark, videos_path) or Path(videos_path).exists()):
            raise SystemExit(f"{path} names videos by video_id but there is no videos table at {videos_path}")
        if not is_delta_table(spark, texts_path):
            raise SystemExit(f"{path} names videos by video_id but there is no {VIDEO_TEXTS.name} table at {texts_path}: "
                             f"run `hcmrm pseudo-queries` first")
        df = with_video_text(df, read_table(spark, videos_path), read_table(spark, texts_path))
    return df.toPandas()


def split_rows(frame, split: str, source: str, flag: str):
    """The rows of `split` (every row when there is no split column); a filter that keeps none is named."""
    from hcmrm.train.labeled_data import LabeledDataError

    if "split" not in frame.columns:
        return frame
    rows = frame[frame["split"] == split]
    if rows.empty:
        found = sorted(str(v) for v in frame["split"].dropna().unique())[:10]
        raise LabeledDataError(f"{source}: no rows of split {split!r} ({flag} {split}); its splits are {found}")
    return rows


def read_source(value: str | None, args: argparse.Namespace, settings: Settings, label_maps: dict):
    """(rows as pandas, the source's label map or None, its name) of one `--train`/`--dev` value."""
    from hcmrm.train.labeled_data import parse_source

    path, label_map = parse_source(value, label_maps) if value else (None, None)
    return read_frame(path, args, settings), label_map, path or settings.table("labeled_pairs")


def read_labeled_sets(args: argparse.Namespace, settings: Settings):
    """(train pairs, dev pairs, rejects) after validation (hcmrm.train.labeled_data), each --train source
    through its label map (`NAME=PATH`, the training YAML's `label_maps`)."""
    import pandas as pd

    from hcmrm.train.labeled_data import concat, normalize
    from jobs.common import spark_from_args
    from jobs.pseudo_queries import labeled_texts

    label_maps = load_config(args).label_maps
    train_parts, dev_parts = [], []
    for value in args.train or [None]:  # no --train: the lake's labeled_pairs, split train -> dev
        frame, label_map, name = read_source(value, args, settings, label_maps)
        train = split_rows(frame, args.train_split, name, "--train-split")
        train_parts.append(normalize(train, source=name, label_map=label_map))
        if args.dev is None and "split" in frame.columns:
            dev = split_rows(frame, args.dev_split, name, "--dev-split")
            dev_parts.append(normalize(dev, source=name, label_map=label_map))
    if args.dev:
        frame, label_map, name = read_source(args.dev, args, settings, label_maps)
        dev_parts = [normalize(split_rows(frame, args.dev_split, name, "--dev-split"), source=name, label_map=label_map)]
    train = concat(train_parts)
    dev = concat(dev_parts) if dev_parts else None
    if args.limit:
        train.pairs = train.pairs.head(args.limit)
    rejects = pd.concat([r.rejects.assign(set=name) for name, r in (("train", train), ("dev", dev)) if r is not None])

    def texts(pairs):  # as video_texts are built; Spark only when an OCR/ASR row needs the lake's IDF
        return labeled_texts(pairs, settings, lambda: spark_from_args(args, settings, COMMAND), args.text_conf)

    train_pairs = texts(train.pairs)
    dev_pairs = texts(dev.pairs) if dev is not None and len(dev.pairs) else None
    if len(train_pairs) == 0:
        raise SystemExit("no usable training pairs" + (f" ({len(rejects)} rejected)" if len(rejects) else ""))
    return train_pairs, dev_pairs, rejects


def fingerprint(examples) -> str:
    """Order-independent digest of the evaluation set: the gate compares metrics on equal data only."""
    lines = sorted(f"{e.query}\t{e.text}\t{e.label}\t{len(e.frames or [])}" for e in examples)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:16]


def _rejects_summary(rejects) -> dict:
    if rejects is None or len(rejects) == 0:
        return {"count": 0, "reasons": {}, "rows": []}
    keep = [c for c in rejects.columns if c != "frames"]
    return {
        "count": int(len(rejects)),
        "reasons": {str(k): int(v) for k, v in rejects["reason"].value_counts().items()},
        "rows": json.loads(rejects[keep].head(1000).to_json(orient="records", force_ascii=False)),
    }


# --- run ----------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if (args.num_processes or 1) > 1 and "WORLD_SIZE" not in os.environ:
        summary = run_distributor(args, settings)
    else:
        summary = train_and_register(args, settings)
    if summary is not None:
        if summary.get("gate"):
            print(gate_line(summary["gate"]))
        print(json.dumps(summary, ensure_ascii=False))
    return 0


def gate_line(decision: dict) -> str:
    """The gate's decision in one line, for people reading the job's output (the JSON line follows)."""
    verdict = "PROMOTED to champion" if decision["promote"] else "refused: champion stays"
    return f"gate: v{decision['candidate_version']} {verdict} ({decision['reason']})"


def run_distributor(args: argparse.Namespace, settings: Settings) -> dict | None:
    """Read and validate here, hand the pairs to N processes (Parquet in a temp folder), return rank 0's summary."""
    train_pairs, dev_pairs, rejects = read_labeled_sets(args, settings)
    folder = Path(tempfile.mkdtemp(prefix="hcmrm-finetune-"))
    try:
        overrides = {"train": [str(folder / "train.parquet")], "dev": None, "limit": None, "num_processes": None,
                     "upstream_rejects": int(len(rejects))}
        train_pairs.drop(columns=["split"], errors="ignore").to_parquet(overrides["train"][0])  # labels mapped
        if dev_pairs is not None:
            overrides["dev"] = str(folder / "dev.parquet")
            dev_pairs.drop(columns=["split"], errors="ignore").to_parquet(overrides["dev"])
        return launch(args, settings, COMMAND, distributed_worker, overrides)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def distributed_worker(options: dict):
    """One of the N processes TorchDistributor starts (RANK, WORLD_SIZE... are set)."""
    configure_logging()
    return train_and_register(argparse.Namespace(**options), settings_from_args(argparse.Namespace(**options)))


def train_and_register(args: argparse.Namespace, settings: Settings) -> dict | None:
    """Train (joining a process group when launched as several), then register and gate on the main process."""
    from hcmrm.train import distributed
    from hcmrm.tracking import gate
    from hcmrm.tracking import registry
    from hcmrm.train.finetune import evaluate, finetune
    from hcmrm.train.labeled_data import to_examples

    config = load_config(args)
    device = distributed.pick_device(args.device)
    dist = distributed.init(device)
    train_pairs, dev_pairs, rejects = read_labeled_sets(args, settings)
    train = to_examples(train_pairs)
    dev = to_examples(dev_pairs) if dev_pairs is not None else None
    if len(rejects):
        log.warning("%d labeled rows rejected: %s", len(rejects), rejects["reason"].value_counts().to_dict())
    rejected = int(len(rejects)) + int(getattr(args, "upstream_rejects", 0) or 0)
    out = args.out or Path("runs") / "finetune"
    data_id = fingerprint(dev) if dev else None
    params = {**to_dict(config), "init": args.init or "none",
              "data": {"train": ", ".join(args.train or [settings.table("labeled_pairs")]),
                       "dev": args.dev or f"split={args.dev_split}",
                       "train_pairs": len(train), "dev_pairs": len(dev or []), "rejected": rejected,
                       "dev_fingerprint": data_id or "none"},
              "processes": dist.world_size, "device": device.type}
    summary = None
    try:
        with tracked_run(settings, args.experiment or EXPERIMENT, f"finetune-{config.loss}", params, dist.is_main) as (
            mlrun, log_metrics
        ):
            result = finetune(train, dev, config, out, init=args.init, settings=settings, log_metrics=log_metrics,
                              progress=not args.no_progress, dist=dist, resume=not args.no_resume,
                              device=device)
            if dist.is_main:
                summary = finish(settings, args, config, result, mlrun, rejects, rejected, dev, data_id,
                                 registry, gate, evaluate)
    finally:
        distributed.shutdown()
    return summary


def finish(settings, args, config, result, mlrun, rejects, rejected, dev, data_id, registry, gate, evaluate) -> dict:
    """Log the model and metrics, register the version, and run the gate (main process only)."""
    import mlflow

    metrics = {k: v for k, v in result.metrics.items() if v is not None}
    if metrics:
        mlflow.log_metrics({f"final_{k}": float(v) for k, v in metrics.items()})
    mlflow.log_dict(_rejects_summary(rejects), "rejects.json")
    mlflow.log_dict({"history": result.history}, "dev_history.json")
    source = registry.log_model_dir(result.model_dir)
    summary = {"run_id": mlrun.info.run_id, "model_dir": str(result.model_dir), "metrics": result.metrics,
               "rejected": rejected, "model_version": None, "gate": None}
    if args.no_register:
        return summary
    if not dev:
        log.warning("no dev pairs: the model is logged but not registered (nothing to gate on)")
        return summary
    version = registry.register_version(settings, mlrun.info.run_id, source,
                                        description=f"finetune {config.loss}, init {args.init or 'scratch'}")
    gate.record_version_metrics(settings, version.version, result.metrics, data_id)

    def evaluate_champion(uri: str) -> dict:  # on the candidate's dev set, through the same engine
        from hcmrm.model.checkpoint import load_model
        from hcmrm.tracking.model_uri import resolve

        champion = load_model(resolve(uri, settings).folder)
        return evaluate(champion, dev, config.positive_label, config.eval_batch_size).as_dict()

    decision = gate.apply_gate(settings, version.version, result.metrics, config.gate_metric, data_id,
                               evaluate_champion, config.gate_min_delta)
    summary.update(model_version=str(version.version), gate=asdict(decision))
    return summary


if __name__ == "__main__":
    script_main(sys.modules[__name__])
