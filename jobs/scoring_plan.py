"""The DataFrame steps of a day's scoring plan (jobs/score.py runs them in this order):

    read_inputs -> validate_pairs -> needed_dates -> video_texts_keyed -> earlier_scores + carry_over
      -> video_content -> ad_major -> (udfs.score.score_ads) -> with_carried -> output_rows -> tally

Each is a function of DataFrames (and the job's settings), with no I/O but the reads of read_inputs,
earlier_scores and the Delta log read by video_texts_keyed. tally counts the day into a DateResult, the one type of a day's counts: the command's
lines, backfill's summary, the MLflow metrics and the day's row in scoring_runs all read it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt_
import json
import logging
import re
import time
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from hcmrm.errors import InputDataError
from hcmrm.labels import IRRELEVANT_MAX_LABEL
from hcmrm.model.frames import FrameLimits
from hcmrm.settings import Settings
from hcmrm.tables import (
    ADS, DUPLICATE_AD, DUPLICATE_PAIR, DUPLICATE_VIDEO, EMPTY_QUERY, NO_VIDEO, NULL_AD_ID, NULL_QUERY, OVERSIZED_FRAME,
    PREDICTION, QUERY_AD_PAIRS, RELEVANCE_SCORES, SCORING_REJECTS, UNDECODABLE_FRAMES, UNKNOWN_AD, UNKNOWN_VIDEO,
    VIDEO_TEXTS, VIDEOS, NO_VIDEO_TEXT,
)
from hcmrm.text.normalize import SPARK_BLANK_PATTERN
from jobs.scoring_config import ScoreJobConfig
from jobs.tables import (
    check_contract, conform, contract_columns, is_delta_table, read_table, reason_code, spark_schema, table_version,
)
from jobs.input_changes import changes_since
from udfs.score import ModelRef, ad_fingerprint, content_fingerprint

log = logging.getLogger("hcmrm.scoring_plan")

SQLSTATE = re.compile(r"\s*SQLSTATE: \w+\.?")  # the code Spark appends to a message; the line says enough without it


@dataclass
class DateResult:
    """What scoring one day did: its counts (tally), then the run's stamps (one line of the backfill summary)."""

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

    def metrics(self) -> dict[str, float]:
        """The numbers as MLflow metrics: each count, and `rejected.<reason code>` per reject reason."""
        numbers = {k: float(v) for k, v in dataclasses.asdict(self).items() if isinstance(v, (int, float))}
        return {**numbers, **{f"rejected.{k}": float(v) for k, v in self.rejects_by_reason.items()}}


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
                      video_texts: DataFrame, dates: list[str], salt: str = "", limits: FrameLimits | None = None,
                      max_frames: int = 0) -> DataFrame:
    """(video_id, dt, video_text, ad_fingerprint, frame_reason) of the videos the pairs `valid` need: each
    video's text of its own dt, and the fingerprint of what the engine would read (udfs.score.ad_fingerprint,
    `salt`: the job's settings that decide whether an ad is scored). The fingerprint is video_texts'
    content_fingerprint where it still holds (fresh_fingerprint_dates): no frame is read for it. The frames of
    the other videos (a table written before fingerprints, Parquet videos, a dt changed since pseudo-queries
    ran) are hashed. Where the fingerprint holds, so does video_texts' record of the frames: `frame_reason`
    is the reject it implies for a model of `max_frames` frames within `limits` (recorded_frame_reason)."""
    video_texts = with_recorded_columns(video_texts)
    needed = valid.select("video_id").distinct()
    own_dt = videos.where(F.col("dt").isin(dates)).select("video_id", "dt")
    texts = (video_texts.where(F.col("dt").isin(dates)).join(F.broadcast(needed), "video_id", "left_semi")
             .join(own_dt, ["video_id", "dt"], "left_semi")
             .select("video_id", "dt", "video_text", *RECORDED))
    fresh = fresh_fingerprint_dates(spark, settings, texts)
    trusted = F.col("dt").isin(sorted(fresh)) & F.col("content_fingerprint").isNotNull()
    keyed = texts.where(trusted).withColumn("frame_reason", recorded_frame_reason(limits, max_frames))
    if texts.where(~trusted).limit(1).count():  # only then are frames read to hash them
        frames = videos.where(F.col("dt").isin(dates)).select("video_id", "dt", "frames")
        hashed = (texts.where(~trusted).join(frames, ["video_id", "dt"])
                  .withColumn("content_fingerprint", content_fingerprint(F.col("video_text"), F.col("frames")))
                  .withColumn("frame_reason", F.lit(None).cast("string")).drop("frames"))
        keyed = keyed.unionByName(hashed)
    return keyed.select("video_id", "dt", "video_text",
                        ad_fingerprint(F.col("content_fingerprint"), salt).alias("ad_fingerprint"), "frame_reason")


# What pseudo-queries records about a video's content beside its text (video_texts' optional columns).
RECORDED = ("content_fingerprint", "videos_version", "n_frames", "frame_problems", "frame_limits")


def with_recorded_columns(video_texts: DataFrame) -> DataFrame:
    """`video_texts` with every RECORDED column, null where the table was written before it had them."""
    schema = spark_schema(VIDEO_TEXTS)
    for column in RECORDED:
        if column not in video_texts.columns:
            video_texts = video_texts.withColumn(column, F.lit(None).cast(schema[column].dataType))
    return video_texts


def recorded_frame_reason(limits: FrameLimits | None, max_frames: int) -> Column:
    """The reject the engine would give a video from video_texts' record of its frames: the first recorded
    problem among the frames the engine samples (hcmrm.model.frames.sample_indices, in the same double
    arithmetic), as OVERSIZED_FRAME or UNDECODABLE_FRAMES with the engine's "frame i: ..." detail. Null where
    there is no record, it was made within other limits than `limits`, or no sampled frame has a problem:
    the engine then decodes the frames and decides."""
    if limits is None or max_frames < 1:
        return F.lit(None).cast("string")
    n, m = F.col("n_frames"), F.lit(max_frames)

    def sampled(problem: Column) -> Column:
        spread = F.sequence(F.lit(0), F.lit(max_frames - 1))
        every = (n <= m) & (problem["index"] < n)
        return every | ((n > m) & F.exists(spread, lambda k: F.floor((k + 0.5) * n / m) == problem["index"]))

    first = F.get(F.filter("frame_problems", sampled), 0)  # null past the end, under ANSI too
    detail = F.concat(F.lit("frame "), first["index"].cast("string"), F.lit(": "), first["problem"])
    reason = F.when(first["oversized"], F.format_string(OVERSIZED_FRAME, detail)).otherwise(
        F.format_string(UNDECODABLE_FRAMES, detail))
    return F.when((F.col("frame_limits") == limits.to_json()) & first.isNotNull(), reason)


def video_content(pairs: DataFrame, videos: DataFrame, keyed: DataFrame, dates: list[str]) -> DataFrame:
    """(video_id, video_text, frames, ad_fingerprint, frame_reason) of the videos `pairs` need, and no others:
    the frames of the pairs the engine scores are read, from their videos' dts only (a carried pair reads
    none, nor does a video that its frame_reason already rejects)."""
    needed = F.broadcast(pairs.select("video_id").distinct())
    keyed = keyed.join(needed, "video_id", "left_semi")
    recorded = keyed.where(F.col("frame_reason").isNotNull()).withColumn("frames", F.lit(None).cast("array<binary>"))
    return (
        videos.where(F.col("dt").isin(dates)).select("video_id", "dt", "frames")
        .join(needed, "video_id", "left_semi")
        .join(keyed.where(F.col("frame_reason").isNull()), ["video_id", "dt"])
        .unionByName(recorded)
        .drop("dt")
    )


def fingerprint_salt(config: ScoreJobConfig) -> str:
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



# --- the day's rows and counts ------------------------------------------------------------------------


def tally(date: str, pairs: DataFrame, validated: DataFrame, scored: DataFrame, pairs_per_row: int) -> DateResult:
    """The day's counts, from the persisted validated pairs and scorer output, checked: valid pairs in = pair
    rows out, input = scored + rejected. The run's stamps (version, run, seconds) are the caller's to add."""
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
    done = by_reason.get(None) or {"rows": 0, "distinct_ads": 0, "irrelevant": 0, "carried": 0}
    per_ad = scored.where(F.col("reason").isNull() & ~F.col("carried")).groupBy("ad_id").count()
    ad_rows = per_ad.select(F.sum(F.ceil(F.col("count") / pairs_per_row))).first()[0] or 0
    t = DateResult(
        dt=date, status="scored", input_pairs=input_pairs, scored_pairs=done["rows"],
        rejected_pairs=sum(rejects.values()), distinct_ads=done["distinct_ads"], ad_rows=int(ad_rows),
        vision_encodes=sum(r["vision_encodes"] for r in by_reason.values()), carried_pairs=done["carried"],
        irrelevant_rate=done["irrelevant"] / done["rows"] if done["rows"] else None,
        pairs_per_second=done["rows"] / seconds if seconds > 0 else 0.0, rejects_by_reason=rejects,
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
