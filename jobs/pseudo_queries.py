"""pseudo-queries: videos -> IDF (`keyword_idf`) -> `pretrain_pairs` + `video_texts`, bad rows -> `pretrain_rejects`.

    hcmrm pseudo-queries --date 2024-08-18 [--input PATH] [--seed 0] [--top-k 8] [--idf corpus]
    hcmrm pseudo-queries --all-dates
    spark-submit jobs/pseudo_queries.py [same flags]

Each video with usable text, a keyword and decodable frames becomes one pre-training pair: a
pseudo-query (1..k of its keywords, sampled with a seed derived from --seed and the video id),
the context text (the video text without them), the video keyword sequence (the model's text
input) and the frames. Any other row goes to `pretrain_rejects` with a reason. Every video with a
usable key also gets one row in `video_texts`: the text the model reads about it (the score job
joins it), with the settings that made it. The tables are partitioned by `dt`; each row names its
run, a row per dt in `pseudo_query_runs` commits the run (readers see a dt's committed run only, never
pairs of one run with rejects of another), and a rerun of a date replaces it. Each build is an MLflow
run tagged with its dates, and a second build of one of them stops at once (exit 5) while the first
runs (jobs.claimed_run, as for `hcmrm score`). The counts must
reconcile, input = pairs + rejects and video texts = input - key rejects, or the job fails before
writing.

The corpus IDF (`--idf corpus`, the default) is counted over this run's input and replaces
`keyword_idf`; `--idf stored` reuses the table from an earlier run (say, an --all-dates one);
`--idf jieba` uses jieba's built-in table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from hcmrm.config import load
from hcmrm.model.frames import DEFAULT_LIMITS
from hcmrm.tables import (
    DUPLICATE_VIDEO_ID, KEYWORD_IDF, MISSING_VIDEO_ID, PRETRAIN_PAIRS, PRETRAIN_REJECTS, PSEUDO_QUERY_RUNS, VIDEO_TEXTS,
    VIDEOS,
)
from hcmrm.text.keywords import Idf, KeywordConfig
from hcmrm.text.video_text import TextSettings, describe, fingerprint
from hcmrm.settings import CONF_DIR, Settings
from jobs.claimed_run import claimed_run
from jobs.common import script_main, settings_from_args, spark_from_args
from jobs.commit import append_run, commit_run
from jobs.session import ArrowBatches, arrow_batches
from jobs.tables import (
    check_contract, conform, is_delta_table, overwrite_table, read_table, reason_code, spark_schema, table_version,
)
from udfs.pseudo_query import document_terms_frame, pretrain_rows_frame
from udfs.score import content_fingerprint

COMMAND = "pseudo-queries"
HELP = "build PQVM pre-training pairs (pseudo-query, context text, frames) from the videos table"

log = logging.getLogger(__name__)

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CONF_FILE = CONF_DIR / "jobs" / "pseudo_queries.yaml"
RUN_COLUMN = PRETRAIN_PAIRS.run_column  # pseudo_query_run_id: the run of each output row


@dataclass(frozen=True)
class JobConfig:
    keywords: KeywordConfig = field(default_factory=KeywordConfig)  # extraction and sampling
    seed: int = 0  # the run seed; each video samples with a seed from (seed, video_id)
    max_sequence_chars: int = 128  # length bound of the video keyword sequence (video_text)
    arrow_batch: ArrowBatches = field(default_factory=ArrowBatches)  # per Arrow batch into Python: rows, bytes
    partitions: int = 0  # tasks per pass; 0 = max(cores, input partitions)
    experiment: str = "hcmrm-pseudo-queries"  # MLflow experiment of the runs (one per build: its dates, its counts)
    claim_hours: float = 24.0  # a RUNNING build of a shared dt younger than this makes a new one stop (exit 5)

    def text_settings(self) -> TextSettings:
        """How this job builds the model's text about a video (fine-tuning and evaluation use it too)."""
        return TextSettings(self.keywords, self.max_sequence_chars)


# --- arguments ----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--date", action="append", metavar="YYYY-MM-DD", help="a dt to build; repeatable")
    which.add_argument("--all-dates", action="store_true", help="every dt in the input")
    parser.add_argument("--input", help="videos table, Delta or Parquet (default: the lake's `videos`)")
    parser.add_argument("--seed", type=int, help="run seed for pseudo-query sampling (conf default 0)")
    parser.add_argument("--top-k", type=int, help="keywords kept per video (conf default)")
    parser.add_argument(
        "--idf", choices=("corpus", "stored", "jieba"), help="IDF: count over the input, reuse keyword_idf, or jieba's"
    )
    parser.add_argument("--job-conf", type=Path, default=CONF_FILE, help=f"job YAML (default {CONF_FILE})")


# --- read ---------------------------------------------------------------------------------------


def read_videos(spark: SparkSession, path: str, version: int | None = None) -> DataFrame:
    """The input videos (Delta or Parquet; a Delta table at `version` when given) with exactly the contract's
    columns and types (a column of another type is an InputDataError naming it, not a cast)."""
    return conform(check_contract(read_table(spark, path, version), VIDEOS, path), VIDEOS, f"videos at {path}")


def select_dates(videos: DataFrame, dates: list[str] | None) -> tuple[DataFrame, list[str]]:
    """The rows of `dates` (None = all) and the sorted dates; a malformed or null dt is an error."""
    if dates is not None:
        bad = [d for d in dates if not DATE.match(d)]
        if bad:
            raise ValueError(f"--date expects YYYY-MM-DD, got {bad}")
        return videos.where(F.col("dt").isin(dates)), sorted(set(dates))
    found = [r.dt for r in videos.select("dt").distinct().collect()]
    bad = [d for d in found if d is None or not DATE.match(d)]
    if bad:
        raise ValueError(f"the input has rows whose dt is null or not YYYY-MM-DD: {bad[:5]}")
    return videos, sorted(found)


# --- transforms (DataFrame -> DataFrame) --------------------------------------------------------


DOC_COUNT_TERM = ""  # every document also counts this (never a real) term: its df is n_docs


def term_counts(videos: DataFrame, config: KeywordConfig = KeywordConfig()) -> DataFrame:
    """(term, df): in how many videos each jieba candidate term occurs, plus DOC_COUNT_TERM's row.

    One pass over the videos (one mapInPandas, an explode, a groupBy). n_docs counts videos with
    usable text.
    """
    terms = document_terms_frame(videos, config)
    return (
        terms.select(F.explode(F.array_union("terms", F.array(F.lit(DOC_COUNT_TERM)))).alias("term"))
        .groupBy("term")
        .agg(F.count("*").alias("df"))
    )


def idf_table(counts: DataFrame, min_df: int = 1) -> DataFrame:
    """`keyword_idf` rows (term, df, n_docs, idf) from term_counts; idf = ln((1 + n_docs) / (1 + df)) + 1.

    The formula of hcmrm.text.keywords.idf_value; terms in fewer than min_df videos are left out.
    `counts` is read twice (terms, and n_docs joined on): persist it first, or the tokenizing
    runs twice.
    """
    n_docs = counts.where(F.col("term") == DOC_COUNT_TERM).select(F.col("df").alias("n_docs"))
    return (
        counts.where((F.col("term") != DOC_COUNT_TERM) & (F.col("df") >= min_df))
        .crossJoin(n_docs)
        .select("term", "df", "n_docs", (F.log((1 + F.col("n_docs")) / (1 + F.col("df"))) + 1).alias("idf"))
    )


def corpus_idf(videos: DataFrame, config: KeywordConfig = KeywordConfig()) -> DataFrame:
    """`keyword_idf` rows over `videos` in one expression (tokenizes twice unless persisted: small inputs)."""
    return idf_table(term_counts(videos, config), config.min_df)


def idf_from_table(idf_rows: DataFrame, min_df: int = 1) -> Idf:
    """The `keyword_idf` table collected into an hcmrm Idf (weights recomputed from the counts)."""
    rows = idf_rows.select("term", "df", "n_docs").collect()
    if not rows:
        return Idf({}, default=1.0, source="corpus")
    return Idf.from_counts({r.term: r.df for r in rows}, rows[0].n_docs, min_df)


def spread(videos: DataFrame, partitions: int = 0) -> DataFrame:
    """`videos` hashed by key into `partitions` (0: max(cores, input partitions)) so every core tokenizes.

    A small input is one file, one task; and adaptive execution would merge a small shuffle into
    one partition. An explicit repartition is kept as asked, and the key dedup window reuses it.
    """
    if partitions <= 0:
        partitions = max(videos.sparkSession.sparkContext.defaultParallelism, videos.rdd.getNumPartitions())
    return videos.repartition(partitions, "video_id", "dt")


def flag_keys(videos: DataFrame) -> DataFrame:
    """`videos` plus `key_problem`: null, MISSING_VIDEO_ID or DUPLICATE_VIDEO_ID (all but one row of a key)."""
    first = Window.partitionBy("video_id", "dt").orderBy(
        F.col("title").asc_nulls_last(),
        F.col("ocr_text").asc_nulls_last(),
        F.col("asr_text").asc_nulls_last(),
        F.xxhash64(*videos.columns),
    )
    blank = F.coalesce(F.trim(F.col("video_id")), F.lit("")) == ""
    return videos.withColumn(
        "key_problem",
        F.when(blank, F.lit(MISSING_VIDEO_ID)).when(F.row_number().over(first) > 1, F.lit(DUPLICATE_VIDEO_ID)),
    )


def pretrain_results(
    videos: DataFrame, idf, config: KeywordConfig = KeywordConfig(), seed: int = 0, max_sequence_chars: int = 128
) -> DataFrame:
    """One row per input row (udfs.pseudo_query.PAIR_SCHEMA): the pair's fields, or a `reason`.

    `idf` is a broadcast Idf or None (jieba's). Rows with a key problem are rejected in Spark and
    never reach Python.
    """
    flagged = flag_keys(videos)
    good = pretrain_rows_frame(flagged.where(F.col("key_problem").isNull()), idf, config, seed, max_sequence_chars)
    bad = flagged.where(F.col("key_problem").isNotNull()).select(
        "video_id",
        "dt",
        "frames",
        F.coalesce(F.size("frames"), F.lit(0)).cast("int").alias("n_frames"),
        F.col("key_problem").alias("reason"),
    )
    return good.unionByName(bad, allowMissingColumns=True)  # a rejected key has no text: those fields are null


def _run_stamp(run_id: str | None):
    return F.lit(run_id).cast("string").alias(RUN_COLUMN)


def pairs_of(results: DataFrame, run_id: str | None = None) -> DataFrame:
    """The `pretrain_pairs` rows of `pretrain_results`, stamped with the run."""
    return results.where(F.col("reason").isNull()).select(
        *[c for c in PRETRAIN_PAIRS.columns if c != RUN_COLUMN], _run_stamp(run_id))


def video_texts_of(results: DataFrame, text_settings: dict, run_id: str | None = None,
                   videos_version: int | None = None) -> DataFrame:
    """The `video_texts` rows of `pretrain_results`: every video with a usable key, stamped with its settings,
    the run, its content fingerprint and the Delta version of `videos` it was read at (None: Parquet), and
    its frames' count and problems with the limits they were checked within."""
    settings_json = json.dumps(text_settings, sort_keys=True, ensure_ascii=False)
    checked = F.col("frame_problems").isNotNull()
    return results.where(F.col("video_text").isNotNull()).select(
        "video_id", "dt", "video_text", F.lit(settings_json).alias("text_settings"),
        F.lit(fingerprint(text_settings)).alias("text_fingerprint"), _run_stamp(run_id),
        content_fingerprint(F.col("video_text"), F.col("frames")).alias("content_fingerprint"),
        F.lit(videos_version).cast("long").alias("videos_version"),
        "n_frames", "frame_problems", F.when(checked, F.lit(DEFAULT_LIMITS.to_json())).alias("frame_limits"),
    )


def rejects_of(results: DataFrame, rejected_at: datetime, run_id: str | None = None) -> DataFrame:
    """The `pretrain_rejects` rows of `pretrain_results`, stamped with the run's time and id."""
    stamped = results.where(F.col("reason").isNotNull()).withColumn("rejected_at", F.lit(rejected_at))
    return conform(stamped.withColumn(RUN_COLUMN, _run_stamp(run_id)), PRETRAIN_REJECTS)


# --- the job ------------------------------------------------------------------------------------


@dataclass
class Counts:
    input: int
    pairs: int
    rejects: int
    reasons: dict[str, int]  # rejects by reason code (the reason up to its first ":")
    texts: int | None = None  # rows of video_texts: every row with a usable key

    def reconciles(self) -> bool:
        keyless = self.reasons.get(MISSING_VIDEO_ID, 0) + self.reasons.get(DUPLICATE_VIDEO_ID, 0)
        texts_ok = self.texts is None or self.texts == self.input - keyless
        return self.input == self.pairs + self.rejects and texts_ok

    def summary(self) -> str:
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(self.reasons.items())) or "none"
        ok = "reconciled" if self.reconciles() else "NOT RECONCILED"
        texts = "" if self.texts is None else f"; video texts {self.texts:,}"
        counted = f"input {self.input:,} = pairs {self.pairs:,} + rejects {self.rejects:,} ({ok})"
        return f"{counted}; rejects: {reasons}{texts}"


def resolve_idf(
    spark: SparkSession, settings: Settings, videos: DataFrame, config: KeywordConfig, pool: Executor | None = None
) -> tuple[Idf | None, Future | None]:
    """The run's Idf (None = jieba's): counted, read back from the lake, or built in.

    Counted (`idf_source: corpus`), it also replaces `keyword_idf`: on `pool` when given (the
    returned future; the pairs are computed meanwhile), else before returning.
    """
    if config.idf_source == "jieba":
        return None, None
    path = settings.table(KEYWORD_IDF.name)
    if config.idf_source == "stored":
        idf = lake_idf(spark, settings, config)
        log.info("IDF from %s: %d terms", path, len(idf))
        return idf, None
    # Over the rows that can become pairs: no duplicate or id-less row counts twice.
    counts = term_counts(flag_keys(videos).where(F.col("key_problem").isNull()), config).persist()
    try:
        counts.count()  # tokenize once, here; the table and the collect read the cache
        rows = idf_table(counts, config.min_df)
        idf = idf_from_table(rows, config.min_df)
    except BaseException:
        counts.unpersist()
        raise
    log.info("IDF counted: %d terms -> %s", len(idf), path)

    def store() -> None:
        try:
            overwrite_table(rows, path)
        finally:
            counts.unpersist()

    if pool is None:
        store()
        return idf, None
    return idf, pool.submit(store)


def lake_idf(spark: SparkSession, settings: Settings, config: KeywordConfig) -> Idf | None:
    """The IDF the lake's video texts are built with: jieba's (None), or the stored `keyword_idf`."""
    if config.idf_source == "jieba":
        return None
    path = settings.table("keyword_idf")
    if not is_delta_table(spark, path):
        raise FileNotFoundError(f"no keyword_idf table at {path} (idf_source: {config.idf_source}); "
                                f"run `hcmrm pseudo-queries` with --idf corpus first")
    return idf_from_table(read_table(spark, path), config.min_df)


def labeled_texts(pairs, settings: Settings, spark: Callable[[], SparkSession], conf: Path = CONF_FILE):
    """Labeled rows (pandas) with `text` built as this job builds `video_texts`: same function and settings.

    Only rows with OCR/ASR text need the IDF; `spark()` is called only when it is the lake's `keyword_idf`.
    """
    from hcmrm.train.labeled_data import build_texts, needs_idf

    return build_texts(pairs, *labeled_text_inputs(needs_idf(pairs), settings, spark, conf))


def labeled_text_inputs(needs_idf: bool, settings: Settings, spark: Callable[[], SparkSession],
                        conf: Path = CONF_FILE) -> tuple[Idf | None, TextSettings]:
    """(IDF, text settings) that labeled rows' texts are built with; the lake's IDF is read only when `needs_idf`."""
    config = load(JobConfig, conf)
    from_lake = needs_idf and config.keywords.idf_source != "jieba"
    return (lake_idf(spark(), settings, config.keywords) if from_lake else None), config.text_settings()


def build(spark: SparkSession, settings: Settings, input_path: str, dates: list[str] | None, config: JobConfig,
          claim: Callable[[list[str]], None] | None = None) -> Counts:
    """The whole job: read, IDF, pairs and rejects, reconcile, write the tables; returns the counts.

    `claim(dates)`, once the dates are known and before any other work, may stop the job (run: one build
    of a dt at a time). The IDF table is written while the pairs are computed; pairs, rejects and video
    texts are written as one run, all or nothing per dt (write_run).
    """
    videos_version = table_version(spark, input_path)  # read at one version: video_texts records it
    videos, dates = select_dates(read_videos(spark, input_path, videos_version), dates)
    if claim is not None:
        claim(dates)
    n_input = videos.count()
    if n_input == 0:
        raise ValueError(f"no videos in {input_path} for dt {dates}: nothing to build (existing output kept)")
    videos = spread(videos, config.partitions)
    with (
        arrow_batches(spark, config.arrow_batch),
        ThreadPoolExecutor(max_workers=3, thread_name_prefix="pseudo-queries-write") as pool,
    ):
        idf, idf_stored = resolve_idf(spark, settings, videos, config.keywords, pool)
        pending = [idf_stored] if idf_stored is not None else []
        broadcast = spark.sparkContext.broadcast(idf) if idf is not None else None
        results = pretrain_results(videos, broadcast, config.keywords, config.seed, config.max_sequence_chars)
        results = results.persist()  # jieba runs once; the counts and the writes read this
        try:
            code = reason_code().alias("code")  # "bad_frames: frame 0: ..." -> "bad_frames"
            rows = results.groupBy(code).agg(F.count("*").alias("count"), F.count("video_text").alias("texts"))
            rows = rows.collect()
            by_reason = {r.code: r["count"] for r in rows}
            n_pairs = by_reason.pop(None, 0)
            counts = Counts(n_input, n_pairs, sum(by_reason.values()), by_reason, sum(r.texts for r in rows))
            log.info("pseudo-queries %s: %s", dates, counts.summary())
            if not counts.reconciles():
                raise RuntimeError(f"counts do not reconcile, no pairs written: {counts.summary()}")
            if idf_stored is not None:
                idf_stored.result()  # the IDF the pairs were made with is in the lake before they are
            write_run(spark, settings, results, dates, describe(config.text_settings(), idf), pool, pending,
                      videos_version)
        finally:
            wait(pending)  # a write still running reads the cache: release it only after
            results.unpersist()
            if broadcast is not None:
                broadcast.unpersist()
    return counts


def write_run(spark: SparkSession, settings: Settings, results: DataFrame, dates: list[str], text_settings: dict,
              pool: Executor, pending: list[Future], videos_version: int | None = None) -> str:
    """Write the run all or nothing per dt across its tables; its id.

    Its rows go into pretrain_pairs, pretrain_rejects and video_texts beside the committed run's (side by
    side, a few seconds of commit each); then one row per dt in pseudo_query_runs commits them (readers,
    jobs.tables.read_table, see a dt's committed run only); then the dates' rows of other runs are deleted.
    One pseudo-queries run per dt at a time (run claims its dates): a second one's rows would be deleted by
    the first's cleanup.
    """
    run_id = uuid.uuid4().hex
    now = datetime.now(timezone.utc).replace(microsecond=0)
    outputs = [(PRETRAIN_PAIRS, pairs_of(results, run_id)), (PRETRAIN_REJECTS, rejects_of(results, now, run_id)),
               (VIDEO_TEXTS, video_texts_of(results, text_settings, run_id, videos_version))]
    pending += [pool.submit(append_run, df, settings.table(table.name)) for table, df in outputs]
    for write in pending:
        write.result()  # the IDF the pairs were made with is in the lake before the commit, too
    log_rows = spark.createDataFrame([(d, run_id, datetime.now(timezone.utc).replace(tzinfo=None)) for d in dates],
                                     spark_schema(PSEUDO_QUERY_RUNS))
    commit_run(spark, log_rows, settings.table(PSEUDO_QUERY_RUNS.name), "pseudo_query_run_id", run_id,
               [(table, settings.table(table.name)) for table, _ in outputs])
    return run_id


@contextlib.contextmanager
def tracked_build(settings: Settings, config: JobConfig):
    """`claim(dates)` for build: opens the build's claimed MLflow run, tagged with its dates, and stops the
    job (ClaimLost, exit 5) while another build of one of them runs (jobs.claimed_run, as `hcmrm score` does
    for its date). The run ends FINISHED with the block, or FAILED with the error."""
    from hcmrm.tracking.store import configure, use_experiment

    client = configure(settings).MlflowClient()
    with contextlib.ExitStack() as opened:

        def claim(dates: list[str]) -> None:
            name = f"pseudo-queries {dates[0]}..{dates[-1]}" if dates else COMMAND
            opened.enter_context(claimed_run(client, use_experiment(settings, config.experiment), COMMAND, name,
                                             dates, config.claim_hours, "before building anything"))

        yield claim


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    flags = {"seed": args.seed, "keywords.top_k": args.top_k, "keywords.idf_source": args.idf}
    config = load(JobConfig, args.job_conf, flags)
    spark = spark_from_args(args, settings, COMMAND)
    input_path = args.input or settings.table(VIDEOS.name)
    with tracked_build(settings, config) as claim:
        counts = build(spark, settings, input_path, None if args.all_dates else args.date, config, claim)
    print(f"pseudo-queries: {counts.summary()}")
    print(f"  pairs   -> {settings.table(PRETRAIN_PAIRS.name)}")
    print(f"  rejects -> {settings.table(PRETRAIN_REJECTS.name)}")
    print(f"  video texts -> {settings.table(VIDEO_TEXTS.name)}")
    return 0


if __name__ == "__main__":
    script_main(sys.modules[__name__])
