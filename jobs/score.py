"""score: one day's (query, ad) pairs -> Delta `relevance_scores` (+ `scoring_rejects`), ad-major.

    hcmrm score --date 2024-09-10 [--model-uri models:/hcmrm@champion | --model-version 3]
    spark-submit jobs/score.py --date 2024-09-10 [same flags]

read:      query_ad_pairs for the day, ads, videos, video_texts (each video's text, built upstream by
           pseudo-queries); the model version resolved once on the driver
transform: validate pairs (reason per bad row) -> group the good ones by ad (one row per ad, its
           queries in an array, the video's text and frames joined after grouping so they travel
           once per ad) -> score with the engine in mapInArrow (udfs/score.py) -> pair rows
write:     the day's rows of this run appended to scoring_rejects and relevance_scores (each row names
           its scoring_run_id), then the run's row in scoring_runs: the commit, after which readers
           (jobs.tables.read_table) see this run's rows of the day and no other's; then the day's rows
           of earlier runs are deleted. A kill at any point leaves the last committed run whole in both
           tables, never a mix; a rerun replaces the day. An MLflow run holds the counts.
Input pairs = scored + rejected is checked before anything is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt_
import io
import json
import logging
import re
import shutil
import sys
import tempfile
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from hcmrm.config import load
from hcmrm.errors import InputDataError, ModelError, TrackingStoreError, UsageError, classify
from hcmrm.labels import IRRELEVANT_MAX_LABEL
from hcmrm.model.folder import model_files
from hcmrm.scoring import AdPairs, Scorer, ScoringConfig
from hcmrm.settings import CONF_DIR, Settings
from hcmrm.tables import (
    ADS, DUPLICATE_AD, DUPLICATE_PAIR, DUPLICATE_VIDEO, EMPTY_QUERY, NO_VIDEO, NULL_AD_ID, NULL_QUERY, PREDICTION,
    QUERY_AD_PAIRS, RELEVANCE_SCORES, SCORING_REJECTS, SCORING_RUNS, UNKNOWN_AD, UNKNOWN_VIDEO, VIDEO_TEXTS, VIDEOS,
    NO_VIDEO_TEXT,
)
from hcmrm.text.normalize import SPARK_BLANK_PATTERN
from jobs.common import script_main, settings_from_args, spark_from_args
from jobs.commit import append_run, commit_run, committed_among
from jobs.session import ArrowBatches, arrow_batches
from jobs.tables import (
    check_contract, check_output, conform, contract_columns, is_delta_table, read_table, reason_code, spark_schema,
    table_version,
)
from jobs.input_changes import changes_since
from udfs.score import ModelRef, ad_fingerprint, content_fingerprint, score_ads

COMMAND = "score"
HELP = "score one day's query_ad_pairs with a registered model -> relevance_scores (+ scoring_rejects)"

log = logging.getLogger("hcmrm.score")

CONF_FILE = CONF_DIR / "jobs" / "score.yaml"
RUN_ID = RELEVANCE_SCORES.run_column  # scoring_run_id: the column that names a scoring run in every table
SQLSTATE = re.compile(r"\s*SQLSTATE: \w+\.?")  # the code Spark appends to a message; the line says enough without it


@dataclass(frozen=True)
class ScoreJobConfig:
    experiment: str = "hcmrm-scoring"  # MLflow experiment of the score and backfill runs
    dimensions: tuple[str, ...] = ("advertiser", "industry")  # carried from query_ad_pairs (first) or ads
    device: str = "auto"  # auto (the task's Spark GPU, else cuda:0, else CPU), cpu or cuda
    require_text: bool = True  # reject ads whose video has no text at all
    require_input: bool = True  # a day with no rows in query_ad_pairs is an error (exit 3), not an empty day
    claim_hours: float = 24.0  # a RUNNING score of the same date younger than this makes a new one stop (claim_dates)
    # What one Arrow batch into a scoring worker holds: ad rows, their pairs (rows of pairs_per_row), bytes.
    arrow_batch: ArrowBatches = field(default_factory=lambda: ArrowBatches(rows=128, pairs=128 * 4096))
    pairs_per_row: int = 4096  # pairs of one ad per row: a hot ad is cut into rows of at most this many
    # Incremental scoring: a pair whose (query, ad_fingerprint, model version) has a committed score in the
    # carry_over_days before the date is carried over, not scored again; 0 scores every pair (--full-rescore).
    carry_over_days: int = 7
    engine: ScoringConfig = field(default_factory=ScoringConfig)  # the engine's batching


@dataclass
class DateResult:
    """What scoring one day did (one line of the backfill summary)."""

    dt: str  # the day
    status: str  # scored, empty (no input rows), skipped or failed
    model_version: str = ""  # the version that scored (or had scored) the day
    input_pairs: int = 0  # rows of query_ad_pairs for the day
    scored_pairs: int = 0  # rows written to relevance_scores
    rejected_pairs: int = 0  # rows written to scoring_rejects
    distinct_ads: int = 0  # distinct ads among the scored pairs
    vision_encodes: int = 0  # rows whose frames the engine ran through the vision tower (equals ad_rows)
    irrelevant_rate: float | None = None  # share of scored pairs labeled Bad or Less
    seconds: float = 0.0  # wall time of the whole day
    pairs_per_second: float = 0.0  # scored pairs / seconds of the scoring stage
    rejects_by_reason: dict = field(default_factory=dict)  # reason code -> pairs
    run_id: str = ""  # the MLflow run of this scoring
    error: str = ""  # why it failed
    input_version: int | None = None  # the Delta version of query_ad_pairs the day was read at (None: Parquet)
    why: str = ""  # why backfill scored the day (never scored, another version, input changed, forced)
    ad_rows: int = 0  # rows the engine's ads were cut into: ads with a pair to score + the extra rows of hot ads
    carried_pairs: int = 0  # of scored_pairs, those carried over from an earlier day's committed score
    warning: str = ""  # the day is committed, but something after the commit failed (the MLflow run's update)


# --- arguments -----------------------------------------------------------------------------------


def day(text: str) -> str:
    """A yyyy-mm-dd date (argparse type)."""
    try:
        return dt_.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date yyyy-mm-dd, got {text!r}") from None


def days_between(start: str, end: str) -> list[str]:
    first, last = dt_.date.fromisoformat(start), dt_.date.fromisoformat(end)
    if last < first:
        raise UsageError(f"--end {end} is before --start {start}", hint="swap them, or check the dates")
    return [(first + dt_.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model-uri / --model-version / --device / --job-config: shared with backfill."""
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model-uri", help="models:/<name>@<alias> or models:/<name>/<version> (default: @champion)")
    which.add_argument("--model-version", type=int, help="a version number of the registered model (--model-name)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where the workers score (default: conf)")
    parser.add_argument("--job-config", type=Path, default=CONF_FILE, help=f"job defaults (default {CONF_FILE})")
    parser.add_argument("--full-rescore", action="store_true",
                        help="score every pair, reusing no earlier day's score (carry_over_days: 0)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date", type=day, required=True, help="the dt of query_ad_pairs to score, yyyy-mm-dd")
    add_model_arguments(parser)
    add_require_input_argument(parser, None)


def add_require_input_argument(parser: argparse.ArgumentParser, default: bool | None) -> None:
    parser.add_argument("--require-input", action=argparse.BooleanOptionalAction, default=default,
                        help="fail (exit 3) when the day has no rows in query_ad_pairs, instead of recording an "
                             "empty day (score: on, from score.yaml; backfill: off)")


def model_uri_from_args(args: argparse.Namespace, settings: Settings) -> str:
    from hcmrm.tracking.model_uri import champion_uri, version_uri

    if getattr(args, "model_version", None) is not None:
        return version_uri(settings.model_name, args.model_version)
    return args.model_uri or champion_uri(settings.model_name)


# --- the model, resolved once on the driver ---------------------------------------------------------


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


# --- read --------------------------------------------------------------------------------------------


def read_inputs(spark: SparkSession, settings: Settings, date: str, dimensions=()) -> tuple:
    """(the day's pairs, ads, videos, video texts, the Delta version of query_ad_pairs read), each checked
    against its contract (columns and types) before any scoring: InputDataError names the table, the
    column and both types. Only the contracts' columns and the `dimensions` are read on."""
    frames, version = {}, None
    for table in (QUERY_AD_PAIRS, ADS, VIDEOS, VIDEO_TEXTS):
        path = settings.table(table.name)
        try:
            if table is QUERY_AD_PAIRS:  # read at one version, the one scoring_runs records
                version = table_version(spark, path)
            df = read_table(spark, path, version if table is QUERY_AD_PAIRS else None)
        except Exception as err:
            hint = " (run `hcmrm pseudo-queries` for the videos' dates)" if table is VIDEO_TEXTS else ""
            detail = SQLSTATE.sub("", str(err).strip().splitlines()[0])
            raise InputDataError(f"input table {table.name} cannot be read at {path}{hint}: {detail}") from err
        frames[table.name] = contract_columns(check_contract(df, table, path), table, dimensions)
    videos = frames[VIDEOS.name]
    for column in spark_schema(VIDEOS).fields:
        if column.name in VIDEOS.optional and column.name not in videos.columns:  # OCR, ASR: null when absent
            videos = videos.withColumn(column.name, F.lit(None).cast(column.dataType))
    pairs = frames[QUERY_AD_PAIRS.name].where(F.col("dt").cast("string") == date)
    return pairs, frames[ADS.name], videos, frames[VIDEO_TEXTS.name], version


# --- transforms ---------------------------------------------------------------------------------------


def dimension_columns(pairs: DataFrame, ads: DataFrame, dimensions) -> tuple[list[str], list[str]]:
    """(dimensions taken from the pairs, dimensions taken from the ads): the pairs win a name clash."""
    from_pairs = [d for d in dimensions if d in pairs.columns]
    from_ads = [d for d in dimensions if d in ads.columns and d not in from_pairs]
    return from_pairs, from_ads


def validate_pairs(pairs: DataFrame, ads: DataFrame, videos: DataFrame, video_texts: DataFrame,
                   dimensions=()) -> DataFrame:
    """Each input pair with its ad's `video_id`, the ads' dimensions and `reason` (null = scoreable).

    Reasons (hcmrm.tables): NULL_AD_ID, NULL_QUERY, EMPTY_QUERY, UNKNOWN_AD, DUPLICATE_AD, NO_VIDEO,
    UNKNOWN_VIDEO, DUPLICATE_VIDEO, NO_VIDEO_TEXT (video_texts has no row for the video's (video_id, dt):
    its text is never rebuilt here), DUPLICATE_PAIR (a repeated (query, ad_id): the first by impressions is kept).
    """
    _, from_ads = dimension_columns(pairs, ads, dimensions)
    ad_keys = ads.groupBy("ad_id").agg(
        F.count(F.lit(1)).alias("_ad_rows"), F.first("video_id").alias("video_id"),
        *[F.first(d).alias(d) for d in from_ads],
    )
    video_keys = videos.groupBy("video_id").agg(F.count(F.lit(1)).alias("_video_rows"), F.first("dt").alias("_dt"))
    text_keys = video_texts.select("video_id", F.col("dt").alias("_dt"), F.lit(True).alias("_has_text")).distinct()
    order = F.col("impressions").desc_nulls_last() if "impressions" in pairs.columns else F.lit(0)
    first = F.row_number().over(Window.partitionBy("query", "ad_id").orderBy(order))
    df = (
        pairs.withColumn("_nth", first)
        .join(ad_keys, "ad_id", "left")
        .join(video_keys, "video_id", "left")
        .join(text_keys, ["video_id", "_dt"], "left")
    )
    reason = (
        F.when(F.col("ad_id").isNull(), NULL_AD_ID)
        .when(F.col("query").isNull(), NULL_QUERY)
        .when(F.regexp_replace("query", SPARK_BLANK_PATTERN, "") == "", EMPTY_QUERY)
        .when(F.col("_ad_rows").isNull(), UNKNOWN_AD)
        .when(F.col("_ad_rows") > 1, F.format_string(DUPLICATE_AD, "_ad_rows"))
        .when(F.col("video_id").isNull(), NO_VIDEO)
        .when(F.col("_video_rows").isNull(), UNKNOWN_VIDEO)
        .when(F.col("_video_rows") > 1, DUPLICATE_VIDEO)
        .when(F.col("_has_text").isNull(), NO_VIDEO_TEXT)
        .when(F.col("_nth") > 1, DUPLICATE_PAIR)
    )
    return df.withColumn("reason", reason).drop("_ad_rows", "_video_rows", "_dt", "_has_text", "_nth")


def needed_dates(valid: DataFrame, videos: DataFrame) -> list[str]:
    """The dts of the videos the pairs `valid` need: the only partitions of `videos` and `video_texts` the
    night reads, however many other dates the lake holds. (Their ids and dts only: no frame is read.)"""
    needed = valid.select("video_id").distinct()
    rows = videos.select("video_id", "dt").join(F.broadcast(needed), "video_id", "left_semi").select("dt").distinct()
    return sorted(r[0] for r in rows.collect())


def fresh_fingerprint_dates(spark: SparkSession, settings: Settings, texts: DataFrame) -> set[str]:
    """The dts of `texts` (video_texts rows) whose content fingerprints still hold: pseudo-queries computed
    them from a Delta version of `videos` that no later commit changed in that dt (jobs.input_changes).
    None of them for Parquet videos, or where the log since then is gone."""
    path = settings.table(VIDEOS.name)
    now = table_version(spark, path)
    if now is None:
        return set()
    read_at = {r["dt"]: r["v"] for r in texts.groupBy("dt").agg(F.min("videos_version").alias("v")).collect()
               if r["v"] is not None}
    return set(read_at) - set(changes_since(spark, path, read_at, now))


def video_texts_keyed(spark: SparkSession, settings: Settings, valid: DataFrame, videos: DataFrame,
                      video_texts: DataFrame, dates: list[str], salt: str = "") -> DataFrame:
    """(video_id, dt, video_text, ad_fingerprint) of the videos the pairs `valid` need: each video's text of
    its own dt, and the fingerprint of what the engine would read (udfs.score.ad_fingerprint, `salt`: the
    job's settings that decide whether an ad is scored). The fingerprint is video_texts' content_fingerprint
    where it still holds (fresh_fingerprint_dates): no frame is read for it. The frames of the other videos
    (a table written before fingerprints, Parquet videos, a dt changed since pseudo-queries ran) are hashed."""
    for column, kind in (("content_fingerprint", "string"), ("videos_version", "long")):
        if column not in video_texts.columns:  # a video_texts table written before
            video_texts = video_texts.withColumn(column, F.lit(None).cast(kind))
    needed = valid.select("video_id").distinct()
    own_dt = videos.where(F.col("dt").isin(dates)).select("video_id", "dt")
    texts = (video_texts.where(F.col("dt").isin(dates)).join(F.broadcast(needed), "video_id", "left_semi")
             .join(own_dt, ["video_id", "dt"], "left_semi")
             .select("video_id", "dt", "video_text", "content_fingerprint", "videos_version"))
    fresh = fresh_fingerprint_dates(spark, settings, texts)
    trusted = F.col("dt").isin(sorted(fresh)) & F.col("content_fingerprint").isNotNull()
    keyed = texts.where(trusted)
    if texts.where(~trusted).limit(1).count():  # only then are frames read to hash them
        frames = videos.where(F.col("dt").isin(dates)).select("video_id", "dt", "frames")
        hashed = (texts.where(~trusted).join(frames, ["video_id", "dt"])
                  .withColumn("content_fingerprint", content_fingerprint(F.col("video_text"), F.col("frames")))
                  .drop("frames"))
        keyed = keyed.unionByName(hashed)
    return keyed.select("video_id", "dt", "video_text",
                        ad_fingerprint(F.col("content_fingerprint"), salt).alias("ad_fingerprint"))


def video_content(pairs: DataFrame, videos: DataFrame, keyed: DataFrame, dates: list[str]) -> DataFrame:
    """(video_id, video_text, frames, ad_fingerprint) of the videos `pairs` need, and no others: the frames
    of the pairs the engine scores are read, from their videos' dts only (a carried pair reads none)."""
    needed = pairs.select("video_id").distinct()
    return (
        videos.where(F.col("dt").isin(dates)).select("video_id", "dt", "frames")
        .join(F.broadcast(needed), "video_id", "left_semi")
        .join(keyed, ["video_id", "dt"])
        .drop("dt")
    )


def fingerprint_salt(config: "ScoreJobConfig") -> str:
    """The settings besides the model and the ad's content that decide a pair's row: an ad with no text is
    rejected or scored (require_text), a large frame decoded or rejected (frame_limits)."""
    return json.dumps({"require_text": config.require_text,
                       "frame_limits": dataclasses.asdict(config.engine.frame_limits)}, sort_keys=True)


def ad_major(valid: DataFrame, content: DataFrame, pair_columns: list[str], ad_columns: list[str],
             pairs_per_row: int = 4096) -> DataFrame:
    """One row per ad and slice of its pairs: its dimensions, its video's content (video_content: text,
    frames, fingerprint) and `pairs` array<struct<query, ...>> of at most `pairs_per_row` pairs.

    The pairs are grouped first, then the video content is joined to the (few) grouped rows: frame
    bytes travel once per row. An ad with more pairs than a row holds (a hot ad, millions of queries a
    day) is cut into several rows, spread over the tasks by (ad_id, slice), so no row, Arrow batch or
    Python worker holds a hot ad whole; each row encodes the ad's frames once (vision encodes = distinct
    ads + the extra rows of cut ads).
    """
    nth = F.row_number().over(Window.partitionBy("ad_id").orderBy("query")) - 1
    # The misses of carry_over bring their video's fingerprint: taken from them, the content's is not
    # computed (its frames are not hashed again).
    known = ["ad_fingerprint"] if "ad_fingerprint" in valid.columns else []
    grouped = (
        valid.withColumn("_slice", F.floor(nth / pairs_per_row))
        .groupBy("ad_id", "video_id", *known, *ad_columns, "_slice")
        .agg(F.collect_list(F.struct(*pair_columns)).alias("pairs"))
    )
    # The join gathers each video's rows in one task; spread the slices of a hot ad over the tasks again.
    return grouped.join(content.drop(*known), "video_id").repartition("ad_id", "_slice").drop("_slice")


# --- incremental scoring ------------------------------------------------------------------------------


def earlier_scores(spark: SparkSession, settings: Settings, date: str, model: ModelRef, days: int) -> DataFrame | None:
    """(query, ad_fingerprint, the prediction columns): one committed score per pair the `days` days
    before `date` scored with `model` (the latest day's); None when there is nothing to reuse."""
    path = settings.table(RELEVANCE_SCORES.name)
    if days <= 0 or not is_delta_table(spark, path):
        return None
    scores = read_table(spark, path)  # committed runs only (jobs.tables.read_committed)
    if "ad_fingerprint" not in scores.columns:  # a table written before fingerprints
        return None
    first = (dt_.date.fromisoformat(date) - dt_.timedelta(days=days)).isoformat()
    latest = F.max_by(F.struct(*PREDICTION.names), F.col("dt"))
    return (
        scores.where((F.col("dt") >= first) & (F.col("dt") < date) & F.col("ad_fingerprint").isNotNull()
                     & (F.col("model_name") == model.name) & (F.col("model_version") == model.version))
        .groupBy("query", "ad_fingerprint").agg(latest.alias("_p"))
        .select("query", "ad_fingerprint", "_p.*")
    )


def carry_over(valid: DataFrame, fingerprints: DataFrame | None,
               earlier: DataFrame | None) -> tuple[DataFrame, DataFrame | None]:
    """(the valid pairs to score, the valid pairs with an earlier score: its prediction columns), both with
    their ad_fingerprint (from `fingerprints`: video_id, ad_fingerprint); (valid, None) when there is
    nothing to reuse. Only the former go through the engine."""
    if earlier is None:
        return valid, None
    keyed, keys = valid.join(fingerprints, "video_id"), ["query", "ad_fingerprint"]
    return keyed.join(earlier, keys, "left_anti"), keyed.join(earlier, keys)


def with_carried(scored: DataFrame, carried: DataFrame | None) -> DataFrame:
    """The engine's pair rows and the carried ones in the same columns, `carried` telling them apart."""
    scored = scored.withColumn("carried", F.lit(False))
    if carried is None:
        return scored
    filled = {"vision_encodes": F.lit(0).cast("int"), "carried": F.lit(True),
              "reason": F.lit(None).cast("string")}
    return scored.unionByName(carried.select(
        [filled.get(f.name, F.col(f.name)).cast(f.dataType).alias(f.name) for f in scored.schema.fields]))


# --- one day -----------------------------------------------------------------------------------------


def score_date(
    spark: SparkSession,
    settings: Settings,
    config: ScoreJobConfig,
    date: str,
    model: ModelRef,
    experiment_id: str,
    parent_run_id: str | None = None,
) -> DateResult:
    """Score `date` with `model` and write it; the MLflow run is closed FAILED if anything raises."""
    from hcmrm.tracking.runs import DATE_TAG, JOB_TAG, adopt_run, claim_dates, close_run
    from hcmrm.tracking.store import configure

    client = configure(settings).MlflowClient()
    tags = {JOB_TAG: COMMAND, DATE_TAG: date}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    run_id = client.create_run(experiment_id, run_name=f"score {date}", tags=tags).info.run_id
    try:
        adopt_run(client, run_id)  # KILLED if the command is stopped; closes this date's runs a kill -9 left RUNNING
        # One score of a date at a time (a backfill's dates included): the loser stops here, before reading. A
        # rival whose run id is in scoring_runs has committed the day (its MLflow run was left open): not a rival.
        claim_dates(client, client.get_run(run_id), config.claim_hours, "before reading anything",
                    committed=lambda ids: committed_among(spark, settings.table(SCORING_RUNS.name), RUN_ID, ids))
        for key, value in {
            "date": date, "model_name": model.name, "model_version": model.version, "model_run_id": model.run_id,
            "device": config.device, "spark_profile": settings.spark_profile,
            **{f"engine.{k}": v for k, v in dataclasses.asdict(config.engine).items()},
        }.items():
            client.log_param(run_id, key, value)
        result = _score_and_write(spark, settings, config, date, model, run_id)
    except BaseException as err:
        close_run(client, run_id, "FAILED", str(err))  # a store failing here is logged: `err` is what is told
        raise
    try:  # the day is committed: a tracking failure now is a warning, not a failed day
        metrics = {k: v for k, v in dataclasses.asdict(result).items() if isinstance(v, (int, float)) and v is not None}
        metrics.update({f"rejected.{k}": v for k, v in result.rejects_by_reason.items()})
        for key, value in metrics.items():
            client.log_metric(run_id, key, float(value))
        client.set_terminated(run_id, "FINISHED")
    except Exception as err:
        failure = classify(err)
        if isinstance(failure, TrackingStoreError):
            failure.store = settings.tracking_uri
        result.warning = (f"{date} is committed (run {run_id} in scoring_runs), but its MLflow run was not "
                          f"updated: {failure.line()}")
        log.warning("%s", result.warning)
    return result


@dataclass
class Tally:
    """The day's counts, from the persisted validated pairs and scorer output."""

    input_pairs: int  # rows read for the day
    scored_pairs: int  # pairs with probabilities
    distinct_ads: int  # distinct ads among them
    ad_rows: int  # rows the engine's ads were cut into (pairs_per_row each at most): one vision encode per row
    carried_pairs: int  # scored pairs carried over from an earlier day (never through the engine)
    vision_encodes: int  # the engine's count, summed over the workers
    irrelevant_pairs: int  # scored pairs with label <= 1
    rejects_by_reason: dict  # reason code -> pairs
    scoring_seconds: float  # wall time of the action that ran the scorer

    @property
    def rejected_pairs(self) -> int:
        return sum(self.rejects_by_reason.values())


def tally(date: str, pairs: DataFrame, validated: DataFrame, scored: DataFrame, pairs_per_row: int) -> Tally:
    """Count what happened and check it: valid pairs in = pair rows out, input = scored + rejected."""
    input_pairs = pairs.count()
    if input_pairs == 0:  # recorded as an empty day, but a nightly run should hear about a missing partition
        log.warning("%s: query_ad_pairs has no rows for this dt; is the upstream partition missing?", date)
    checked = dict(validated.groupBy(reason_code()).count().collect())
    started = time.perf_counter()  # the next action runs the scorer (and fills the cache)
    by_reason = {
        r["code"]: r
        for r in scored.groupBy(reason_code().alias("code")).agg(
            F.count(F.lit(1)).alias("rows"),
            F.coalesce(F.sum("vision_encodes"), F.lit(0)).alias("vision_encodes"),
            F.countDistinct("ad_id").alias("distinct_ads"),
            F.count(F.when(F.col("label") <= IRRELEVANT_MAX_LABEL, 1)).alias("irrelevant"),
            F.count(F.when(F.col("carried"), 1)).alias("carried"),
        ).collect()
    }
    seconds = time.perf_counter() - started
    rejects = {code: n for code, n in checked.items() if code is not None}
    for code, r in by_reason.items():
        if code is not None:
            rejects[code] = rejects.get(code, 0) + r["rows"]
    done = by_reason.get(None)
    per_ad = scored.where(F.col("reason").isNull() & ~F.col("carried")).groupBy("ad_id").count()
    ad_rows = per_ad.select(F.sum(F.ceil(F.col("count") / pairs_per_row))).first()[0] or 0
    t = Tally(
        input_pairs=input_pairs, scored_pairs=done["rows"] if done else 0,
        distinct_ads=done["distinct_ads"] if done else 0, ad_rows=int(ad_rows),
        vision_encodes=sum(r["vision_encodes"] for r in by_reason.values()),
        irrelevant_pairs=done["irrelevant"] if done else 0, rejects_by_reason=rejects, scoring_seconds=seconds,
        carried_pairs=done["carried"] if done else 0,
    )
    came_out = sum(r["rows"] for r in by_reason.values())
    if came_out != checked.get(None, 0):
        raise RuntimeError(f"{date}: {checked.get(None, 0)} valid pairs went into the scorer, {came_out} came out")
    if t.input_pairs != t.scored_pairs + t.rejected_pairs:
        raise RuntimeError(f"{date}: input {t.input_pairs} != scored {t.scored_pairs} + rejected {t.rejected_pairs}")
    if t.vision_encodes != t.ad_rows:
        log.warning("%s: %d vision encodes for %d ad rows", date, t.vision_encodes, t.ad_rows)
    return t


def output_rows(date: str, validated: DataFrame, scored: DataFrame, dims: list[str], model: ModelRef,
                run_id: str, now: dt_.datetime) -> tuple[DataFrame, DataFrame]:
    """(relevance_scores rows, scoring_rejects rows) of the day, stamped with the model and the run."""
    ok = F.col("reason").isNull()
    stamp = [F.lit(model.name).alias("model_name"), F.lit(model.version).alias("model_version"),
             F.lit(model.run_id).alias("run_id"), F.lit(run_id).alias("scoring_run_id")]
    scores = scored.where(ok).select(
        F.lit(date).alias("dt"), "query", "ad_id", *dims, *PREDICTION.names, *stamp, F.lit(now).alias("scored_at"),
        "ad_fingerprint",
    )
    rejected = (
        validated.where(~ok).select("query", "ad_id", "reason")
        .unionByName(scored.where(~ok).select("query", "ad_id", "reason"))
        .select(F.lit(date).alias("dt"), "*", *stamp, F.lit(now).alias("rejected_at"))
    )
    return scores, conform(rejected, SCORING_REJECTS)  # the stamps it has no column for are dropped


def _score_and_write(spark, settings, config, date, model, run_id) -> DateResult:
    started = time.perf_counter()
    now = dt_.datetime.now(dt_.timezone.utc).replace(tzinfo=None)
    pairs, ads, videos, video_texts, input_version = read_inputs(spark, settings, date, config.dimensions)
    if config.require_input and pairs.limit(1).count() == 0:
        raise InputDataError(f"query_ad_pairs has no rows for dt {date} at {settings.table(QUERY_AD_PAIRS.name)}: "
                             f"the day's partition is empty or missing",
                             hint="rerun when upstream has written it, or pass --no-require-input to record an "
                                  "empty day")
    from_pairs, from_ads = dimension_columns(pairs, ads, config.dimensions)
    impressions = ["impressions"] if "impressions" in pairs.columns else []

    validated = validate_pairs(pairs, ads, videos, video_texts, config.dimensions).persist(StorageLevel.MEMORY_AND_DISK)
    valid = validated.where(F.col("reason").isNull())
    dates = needed_dates(valid, videos)
    keyed = video_texts_keyed(spark, settings, valid, videos, video_texts, dates, fingerprint_salt(config))
    earlier = earlier_scores(spark, settings, date, model, config.carry_over_days)
    # The lookup's misses and carried rows (and through the misses, the engine's rows) share one fingerprint
    # per video: only the small (video_id, fingerprint) rows are kept.
    fingerprints = None if earlier is None else keyed.select("video_id", "ad_fingerprint").persist(
        StorageLevel.MEMORY_AND_DISK)
    misses, carried = carry_over(valid, fingerprints, earlier)
    content = video_content(misses, videos, keyed, dates)
    ad_rows = ad_major(misses, content, ["query", *impressions, *from_pairs], from_ads, config.pairs_per_row)
    scored = score_ads(ad_rows, model, config.engine, config.device, config.require_text)
    scored = with_carried(scored, carried).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        scores, rejects = output_rows(date, validated, scored, [*impressions, *from_pairs, *from_ads], model,
                                      run_id, now)
        for table, rows in ((RELEVANCE_SCORES, scores), (SCORING_REJECTS, rejects)):  # before the scoring stage
            check_output(spark, rows, settings.table(table.name), table.name)
        # The next action runs the scorer; tally raises before anything is written.
        t = tally(date, pairs, validated, scored, config.pairs_per_row)
        # The day's rows of this run are added next to the last committed run's; readers see them once
        # the run's row is in scoring_runs (commit_day below, the commit).
        append_run(rejects, settings.table(SCORING_REJECTS.name))
        append_run(scores, settings.table(RELEVANCE_SCORES.name))
    finally:
        for df in (scored, fingerprints, validated):
            if df is not None:
                df.unpersist()
        # The scores' append re-caches `scored` (its plan reads relevance_scores for the carry-over) under a
        # plan that unpersist no longer finds; left there, every later write to the lake re-plans it, slower
        # each day of a backfill. The job owns its session, so nothing else of it is cached.
        spark.catalog.clearCache()

    result = DateResult(
        dt=date, status="scored", model_version=model.version, input_pairs=t.input_pairs,
        scored_pairs=t.scored_pairs, rejected_pairs=t.rejected_pairs, distinct_ads=t.distinct_ads,
        ad_rows=t.ad_rows, vision_encodes=t.vision_encodes, carried_pairs=t.carried_pairs,
        irrelevant_rate=t.irrelevant_pairs / t.scored_pairs if t.scored_pairs else None,
        seconds=time.perf_counter() - started,
        pairs_per_second=t.scored_pairs / t.scoring_seconds if t.scoring_seconds > 0 else 0.0,
        rejects_by_reason=t.rejects_by_reason, run_id=run_id, input_version=input_version,
    )
    commit_day(spark, settings, result, model)  # from here readers see this run's rows
    log.info(
        "%s: %d pairs -> %d scored (%d carried over) + %d rejected; %d distinct ads, %d engine rows, %d vision "
        "encodes; %.1f pairs/s", date, t.input_pairs, t.scored_pairs, t.carried_pairs, t.rejected_pairs,
        t.distinct_ads, t.ad_rows, t.vision_encodes, result.pairs_per_second,
    )
    return result


def commit_day(spark: SparkSession, settings: Settings, result: DateResult, model: ModelRef) -> None:
    """The run's row in Delta `scoring_runs` commits the day's rows (jobs.commit), then the day's rows of
    other runs are deleted."""
    counts = ("input_pairs", "scored_pairs", "rejected_pairs", "distinct_ads", "vision_encodes", "irrelevant_rate",
              "seconds", "input_version", "carried_pairs")
    values = {
        "dt": result.dt, "model_name": model.name, "model_version": model.version, "model_run_id": model.run_id,
        "scoring_run_id": result.run_id, **{c: getattr(result, c) for c in counts},
        "finished_at": dt_.datetime.now(dt_.timezone.utc).replace(tzinfo=None),  # for people: order is the commit's
    }
    row = spark.createDataFrame([tuple(values[c] for c in SCORING_RUNS.columns)], spark_schema(SCORING_RUNS))
    commit_run(spark, row, settings.table(SCORING_RUNS.name), RUN_ID, result.run_id,
               [(t, settings.table(t.name)) for t in (SCORING_REJECTS, RELEVANCE_SCORES)])


# --- the command -------------------------------------------------------------------------------------


def prepare(args: argparse.Namespace, command: str):
    """(settings, job config, spark, model, experiment id): what score and backfill set up once."""
    from hcmrm.tracking.store import use_experiment

    settings = settings_from_args(args)
    config = load(ScoreJobConfig, args.job_config, {
        "device": args.device, "require_input": getattr(args, "require_input", None),
        "carry_over_days": 0 if getattr(args, "full_rescore", False) else None})
    model = resolve_model(settings, model_uri_from_args(args, settings), config.engine)  # before Spark: seconds
    try:
        spark = spark_from_args(args, settings, command)
        model = ship_model(spark, model)
        experiment_id = use_experiment(settings, config.experiment)
    except BaseException:
        release_model(model)
        raise
    return settings, config, spark, model, experiment_id


def run(args: argparse.Namespace) -> int:
    settings, config, spark, model, experiment_id = prepare(args, COMMAND)
    try:
        with arrow_batches(spark, config.arrow_batch, config.pairs_per_row):
            r = score_date(spark, settings, config, args.date, model, experiment_id)
    finally:
        release_model(model)
    rate = "n/a" if r.irrelevant_rate is None else f"{r.irrelevant_rate:.4f}"
    print(f"scored {r.dt} with {model.name} v{model.version}: {r.input_pairs} pairs = {r.scored_pairs} scored "
          f"+ {r.rejected_pairs} rejected {r.rejects_by_reason}")
    print(f"  distinct ads {r.distinct_ads} in {r.ad_rows} rows, vision encodes {r.vision_encodes}; "
          f"{r.carried_pairs} pairs carried over from earlier days; irrelevant rate {rate}; "
          f"{r.pairs_per_second:.1f} pairs/s; {r.seconds:.1f} s")
    for table in (RELEVANCE_SCORES, SCORING_REJECTS):
        print(f"  {table.name}: {settings.table(table.name)}")
    print(f"  MLflow run {r.run_id} at {settings.tracking_uri}")
    if r.warning:
        print(f"hcmrm score: warning: {r.warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    script_main(sys.modules[__name__])
