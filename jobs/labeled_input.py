"""Fine-tuning's input: the training pairs staged as shards under the run folder, the dev pairs read whole.

    data = training_data(args, settings, out / "input")   # TrainingData(shards, dev, rejects)

Each `--train` source (or the lake's `labeled_pairs`, split `train`) is validated, label-mapped and given the
model's text once (hcmrm.train.labeled_data.staged_rows), and written as Parquet under
`<folder>/NN/status=accepted|rejected`. Training streams the accepted row groups (hcmrm.train.shards), each
rank its own. A Delta table is staged by Spark's executors (udfs.labeled): none of its rows passes through
the driver. A plain file handed over (JSON, JSON lines, Parquet) is read whole in this process, as the user
gave it, and written in row groups. A rerun with the same sources, label maps, text settings and table
versions reuses the staged files (`_staged.json`), so a resumed run streams the very same shards.

The dev pairs are read whole (they are scored in memory after every epoch): their size is the bound on
what this process holds, docs/training.md. Rejected rows are read back without frames, for the run's log.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hcmrm.settings import Settings
from hcmrm.tables import VIDEO_TEXTS
from hcmrm.train.labeled_data import (LabeledDataError, needs_idf, normalize, parse_source, read_records,
                                      staged_rows)
from hcmrm.train.shards import Shard, list_shards
from jobs.training import is_plain_file

STAGE_GROUP_ROWS = 4096  # rows per row group of a staged plain file
STAGE_MIN_SHARDS = 16  # a small set is cut finer, so that every rank and loader worker gets a batch
STAGE_BLOCK_BYTES = 8 << 20  # Parquet row-group size of a Spark-staged table (rows with frames are large)
MARKER = "_staged.json"


@dataclass
class TrainingData:
    shards: list[Shard]  # the accepted training rows, staged
    dev: pd.DataFrame | None  # dev pairs with their text, in memory
    rejects: pd.DataFrame  # every rejected row (no frames): query, text, raw_label, reason, set

    @property
    def train_rows(self) -> int:
        return sum(s.rows for s in self.shards)


def training_data(args: argparse.Namespace, settings: Settings, folder: Path, spark) -> TrainingData:
    """Stage the training sources into `folder` (or reuse what an identical earlier call staged) and read dev.

    `spark()` gives the session, started only when a source is a table or needs the lake's IDF."""
    from hcmrm.train.shards import first_rows

    label_maps = _label_maps(args)
    sources = [_source(value, settings, label_maps) for value in args.train or [None]]
    key = _staging_key(args, settings, label_maps, sources, spark)
    if _staged_key(folder) != key:
        shutil.rmtree(folder, ignore_errors=True)
        for n, (path, label_map) in enumerate(sources):
            stage_source(path, label_map, args, settings, folder / f"{n:02d}", spark)
        (folder / MARKER).write_text(json.dumps(key, sort_keys=True))  # last: a cut staging is redone
    accepted = [p for n in range(len(sources)) if (p := folder / f"{n:02d}" / "status=accepted").exists()]
    shards = list_shards(accepted) if accepted else []
    if args.limit:
        shards = first_rows(shards, args.limit)
    dev, dev_rejects = read_dev(args, settings, sources, label_maps, spark)
    rejects = pd.concat([_staged_rejects(folder, len(sources)).assign(set="train"), dev_rejects], ignore_index=True)
    if not shards:
        raise SystemExit("no usable training pairs" + (f" ({len(rejects)} rejected)" if len(rejects) else ""))
    return TrainingData(shards, dev, rejects)


def _label_maps(args: argparse.Namespace) -> dict:
    from hcmrm.config import load
    from hcmrm.train.finetune import FinetuneConfig

    return load(FinetuneConfig, args.train_conf).label_maps


def _source(value: str | None, settings: Settings, label_maps: dict) -> tuple[str, dict | None]:
    """(path, label map) of one --train/--dev value; none names the lake's labeled_pairs."""
    return parse_source(value, label_maps) if value else (settings.table("labeled_pairs"), None)


# --- staging ------------------------------------------------------------------------------------


def stage_source(path: str, label_map: dict | None, args: argparse.Namespace, settings: Settings, target: Path,
                 spark) -> None:
    """Write one source's rows of --train-split as staged rows under `target`/status=accepted|rejected."""
    if is_plain_file(path):
        frame = split_rows(read_records(path), args.train_split, path, "--train-split")
        idf, text = _text_inputs(needs_idf(frame), args, settings, spark)
        rows = staged_rows(frame, path, label_map, idf, text)
        for status, part in (("accepted", rows[rows["reason"].isna()]), ("rejected", rows[rows["reason"].notna()])):
            _write_plain(part, target / f"status={status}")
        return
    _stage_table(spark(), path, label_map, args, settings, target)


def _write_plain(rows: pd.DataFrame, folder: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if rows.empty:
        return
    folder.mkdir(parents=True)
    schema = pa.schema([("query", pa.string()), ("text", pa.string()), ("label", pa.int64()),
                        ("frames", pa.list_(pa.binary())), ("raw_label", pa.string()), ("reason", pa.string())])
    group = min(STAGE_GROUP_ROWS, max(1, math.ceil(len(rows) / STAGE_MIN_SHARDS)))
    table = pa.Table.from_pandas(rows.reset_index(drop=True), schema=schema, preserve_index=False)
    pq.write_table(table, folder / "part-00000.parquet", row_group_size=group)


def _stage_table(session, path: str, label_map: dict | None, args: argparse.Namespace, settings: Settings,
                 target: Path) -> None:
    from pyspark.sql import functions as F

    from udfs.labeled import staged_frame

    df = table_rows(session, path, args, settings)
    if "split" in df.columns:
        df = df.where(F.col("split") == args.train_split)
    idf, text = _text_inputs(_needs_idf_columns(df.columns) and _table_needs_idf(df), args, settings, lambda: session)
    if df.rdd.getNumPartitions() < STAGE_MIN_SHARDS:
        df = df.repartition(STAGE_MIN_SHARDS)  # a small table: enough files for every rank and loader worker
    shared = session.sparkContext.broadcast(idf) if idf is not None else None
    (staged_frame(df, path, label_map, shared, text).write.mode("overwrite").partitionBy("status")
     .option("parquet.block.size", STAGE_BLOCK_BYTES).parquet(str(target)))
    if not (target / "status=accepted").exists() and not (target / "status=rejected").exists():
        _no_rows_of_split(session, path, args)


def _no_rows_of_split(session, path: str, args: argparse.Namespace) -> None:
    df = table_rows(session, path, args, None)
    if "split" in df.columns:
        found = sorted(str(r[0]) for r in df.select("split").distinct().limit(10).collect())
        raise _no_split(path, args.train_split, "--train-split", found)
    raise LabeledDataError(f"{path}: no labeled rows")


def _needs_idf_columns(columns) -> bool:
    return "ocr_text" in columns or "asr_text" in columns


def _table_needs_idf(df) -> bool:
    """Whether a row builds its text from OCR/ASR (as labeled_data.needs_idf, counted by Spark)."""
    from pyspark.sql import functions as F

    no_text = F.lit(True) if "text" not in df.columns else F.coalesce(F.col("text"), F.lit("")) == ""
    keywords = [F.coalesce(F.col(c), F.lit("")) != "" for c in ("ocr_text", "asr_text") if c in df.columns]
    has_keywords = keywords[0] if len(keywords) == 1 else keywords[0] | keywords[1]
    return df.where(no_text & has_keywords).limit(1).count() > 0


def _text_inputs(needs_idf: bool, args: argparse.Namespace, settings: Settings, spark):
    from jobs.pseudo_queries import labeled_text_inputs

    return labeled_text_inputs(needs_idf, settings, spark, args.text_conf)


# --- what a rerun must find unchanged to reuse the staged files ----------------------------------


def _staging_key(args: argparse.Namespace, settings: Settings, label_maps: dict, sources, spark) -> dict:
    text_conf = Path(args.text_conf)
    return {"sources": [[path, label_map and {str(k): v for k, v in label_map.items()},
                         _version(path, args, settings, spark)] for path, label_map in sources],
            "train_split": args.train_split,
            "text_conf": hashlib.sha256(text_conf.read_bytes()).hexdigest() if text_conf.exists() else str(text_conf)}


def _version(path: str, args: argparse.Namespace, settings: Settings, spark):
    """A plain file's size and mtime; a table's Delta version, and its videos' and video texts' if it names videos."""
    if is_plain_file(path):
        stat = os.stat(path)
        return [stat.st_size, stat.st_mtime_ns]
    from jobs.tables import table_version

    session = spark()
    return [table_version(session, p) for p in (path, args.videos or settings.table("videos"),
                                                settings.table(VIDEO_TEXTS.name))]


def _staged_key(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _staged_rejects(folder: Path, sources: int) -> pd.DataFrame:
    import pyarrow.parquet as pq

    parts = [folder / f"{n:02d}" / "status=rejected" for n in range(sources)]
    columns = ["query", "text", "raw_label", "reason"]
    frames = [pq.read_table(p, columns=columns).to_pandas() for p in parts if p.exists()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


# --- reading whole: the dev set, a table's rows -------------------------------------------------


def read_dev(args: argparse.Namespace, settings: Settings, sources, label_maps: dict, spark):
    """(dev pairs with their text or None, their rejects): --dev's rows of --dev-split, or the training
    sources' rows of --dev-split when they have a split column."""
    from hcmrm.train.labeled_data import concat

    named = [_source(args.dev, settings, label_maps)] if args.dev else sources
    parts = []
    for path, label_map in named:
        frame = read_whole(path, args, settings, spark, args.dev_split, required=bool(args.dev))
        if frame is not None:
            parts.append(normalize(split_rows(frame, args.dev_split, path, "--dev-split"), path, label_map))
    if not parts:
        return None, pd.DataFrame(columns=["set"])
    dev = concat(parts)
    from jobs.pseudo_queries import labeled_texts

    pairs = labeled_texts(dev.pairs, settings, spark, args.text_conf) if len(dev.pairs) else None
    keep = [c for c in dev.rejects.columns if c != "frames"]
    return pairs, dev.rejects[keep].assign(set="dev")


def read_whole(path: str, args: argparse.Namespace, settings: Settings, spark, split: str,
               required: bool) -> pd.DataFrame | None:
    """A labeled source's rows of `split` as pandas (all its rows without a split column when `required`,
    else None). A plain file is read as it is; a table's split is filtered by Spark."""
    if is_plain_file(path):
        frame = read_records(path)
        return frame if required or "split" in frame.columns else None
    from pyspark.sql import functions as F

    df = table_rows(spark(), path, args, settings)
    if "split" not in df.columns:
        return df.toPandas() if required else None  # --dev names it: the dev set only, read whole
    rows = df.where(F.col("split") == split).toPandas()  # the dev set only: the bound is its size (docstring)
    if rows.empty:
        found = sorted(str(r[0]) for r in df.select("split").distinct().limit(10).collect())
        raise _no_split(path, split, "--dev-split", found)
    return rows


def table_rows(session, path: str, args: argparse.Namespace, settings: Settings | None):
    """A labeled table's rows; pairs given by video_id get their video's text and frames (`with_video_text`)."""
    from jobs.tables import is_delta_table, read_table

    if "://" not in path and not Path(path).exists():
        raise SystemExit(f"no labeled pairs at {path}: run `hcmrm build-lake`, or pass --train FILE")
    df = read_table(session, path)
    if settings is None or "video_id" not in df.columns or "title" in df.columns or "text" in df.columns:
        return df
    videos_path, texts_path = args.videos or settings.table("videos"), settings.table(VIDEO_TEXTS.name)
    if not (is_delta_table(session, videos_path) or Path(videos_path).exists()):
        raise SystemExit(f"{path} names videos by video_id but there is no videos table at {videos_path}")
    if not is_delta_table(session, texts_path):
        raise SystemExit(f"{path} names videos by video_id but there is no {VIDEO_TEXTS.name} table at {texts_path}: "
                         f"run `hcmrm pseudo-queries` first")
    return with_video_text(df, read_table(session, videos_path), read_table(session, texts_path))


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


def split_rows(frame: pd.DataFrame, split: str, source: str, flag: str) -> pd.DataFrame:
    """The rows of `split` (every row when there is no split column); a filter that keeps none is named."""
    if "split" not in frame.columns:
        return frame
    rows = frame[frame["split"] == split]
    if rows.empty:
        raise _no_split(source, split, flag, sorted(str(v) for v in frame["split"].dropna().unique())[:10])
    return rows


def _no_split(source: str, split: str, flag: str, found: list[str]) -> LabeledDataError:
    return LabeledDataError(f"{source}: no rows of split {split!r} ({flag} {split}); its splits are {found}")
