"""The lake's tables as contracts between the jobs: name, columns and types, key, partition, reject reasons.

Every job reads and writes these names and layouts through here, so a table is described once.
Types are Arrow types (this package never imports Spark); jobs/tables.py turns a contract into a
Spark schema. Layouts only ever grow (Delta schema evolution): lakes written before stay readable.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from hcmrm.labels import GRADE_NAMES

TIMESTAMP = pa.timestamp("us", tz="UTC")  # Spark's `timestamp`: an instant, shown in the session time zone
FRAMES = pa.list_(pa.binary())  # a video's encoded frames (JPEG/PNG), 0..F of them
# hcmrm.model.frames.frame_problems of a video's frames: every unusable frame, [] when all are usable
FRAME_PROBLEMS = pa.list_(pa.struct([("index", pa.int32()), ("oversized", pa.bool_()), ("problem", pa.string())]))

# --- reject reasons --------------------------------------------------------------------------------

CODE_SEPARATOR = ":"  # a reason is written "code" or "code: detail"; rejects are counted by the code


class RejectReason(str):
    """One reason a row is rejected: the text a rejects table's `reason` column holds, and what it means.

    It is that text (a str), so jobs write it as it is. A text with printf fields (%s, %d) is a
    template, filled per row by `detail()` in Python or by format_string in Spark.
    """

    __slots__ = ("explanation",)

    def __new__(cls, text: str, explanation: str):
        reason = super().__new__(cls, text)
        reason.explanation = explanation  # for people reading a rejects table
        return reason

    def __reduce__(self):  # pickled into Spark's Python workers with its explanation
        return type(self), (str(self), self.explanation)

    @property
    def code(self) -> str:
        return self.split(CODE_SEPARATOR, 1)[0]

    def detail(self, *values) -> str:
        """The reason of one row: the template's fields filled with `values`."""
        return str(self) % values


# pseudo-queries: why a video yields no pre-training pair (`pretrain_rejects`)
MISSING_VIDEO_ID = RejectReason("missing_video_id", "the video_id is null or blank")
DUPLICATE_VIDEO_ID = RejectReason(
    "duplicate_video_id", "another row has the same (video_id, dt); the first by title, OCR and ASR is kept"
)
NO_TEXT = RejectReason("no_text", "title, OCR and ASR are empty, or only digits and symbols")
NO_KEYWORDS = RejectReason("no_keywords", "the text has words, but every one failed the stopword/length/POS filters")
BAD_FRAMES = RejectReason("bad_frames: %s", "a frame cannot be decoded; the detail names the frame and the error")

# score: why a (query, ad) pair gets no score (`scoring_rejects`)
NULL_AD_ID = RejectReason("null_ad_id", "the pair's ad_id is null")
NULL_QUERY = RejectReason("null_query", "the pair's query is null")
EMPTY_QUERY = RejectReason(
    "empty_query", "the pair's query is empty or only whitespace and invisible characters (hcmrm.text.normalize)"
)
UNKNOWN_AD = RejectReason("unknown_ad: ad_id not in ads", "the pair's ad is missing from the ads table")
DUPLICATE_AD = RejectReason(
    "duplicate_ad: ad_id appears %d times in ads", "the ad has several rows in ads, so its video is ambiguous"
)
NO_VIDEO = RejectReason("no_video: the ad has no video_id", "the ad's row in ads has a null video_id")
UNKNOWN_VIDEO = RejectReason(
    "unknown_video: the ad's video_id is not in videos", "the ad's video is missing from the videos table"
)
DUPLICATE_VIDEO = RejectReason(
    "duplicate_video: the ad's video_id appears more than once in videos", "the ad's video is ambiguous"
)
DUPLICATE_PAIR = RejectReason(
    "duplicate_pair: (dt, query, ad_id) repeated in the input",
    "a repeated pair of the day: the row with the most impressions is scored, the others rejected",
)
NO_VIDEO_TEXT = RejectReason(
    "no_video_text: video_texts has no text for the ad's video",
    "the pseudo-queries job has not written the video's text for its (video_id, dt); it is never rebuilt here",
)
EMPTY_TEXT = RejectReason(
    "empty_text: the ad's video has no title, OCR or ASR text to score against",
    "the ad's video has no text at all (rejected only while the score job's require_text is on)",
)
UNDECODABLE_FRAMES = RejectReason(
    "undecodable_frames: %s", "a frame of the ad's video cannot be decoded; every pair of the ad is rejected"
)
OVERSIZED_FRAME = RejectReason(
    "oversized_frame: %s",
    "a frame of the ad's video is over the engine's pixel or byte cap (engine.frame_limits), so it is not "
    "decoded; every pair of the ad is rejected",
)

# audit-import: why a rater's label is not added to `audit_labels` (the import's rejects file)
MISSING_PAIR_KEY = RejectReason("missing_key: dt, query or ad_id is empty", "the row does not name a pair")
BAD_GRADE = RejectReason(
    "bad_grade: %s", "the label is neither a grade 0..3 nor a grade's name (bad, less, good, excellent)"
)
NO_RATER = RejectReason("no_rater", "the row does not say who labeled it")
BAD_LABELED_AT = RejectReason("bad_labeled_at: %s", "labeled_at is not a timestamp (yyyy-mm-dd[ hh:mm:ss])")
UNKNOWN_PAIR = RejectReason(
    "unknown_pair: not a scored pair of the day", "relevance_scores has no such (dt, query, ad_id): nothing to audit"
)
DUPLICATE_LABEL = RejectReason(
    "duplicate_label: the pair is labeled more than once in the file",
    "one row of the pair is imported (the latest labeled_at, then rater, then label), the others rejected",
)
ALREADY_LABELED = RejectReason(
    "already_labeled: audit_labels already holds the pair", "a pair is audited once; an import never overwrites"
)

# --- tables ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    name: str  # the table's folder in the lake (Settings.table(name))
    schema: pa.Schema  # the columns, in the order they are written, with their types
    key: tuple[str, ...] = ()  # the columns that identify a row; () when rows have no identity
    partition: str | None = None  # the partition column; None for a table written whole or appended
    optional: tuple[str, ...] = ()  # columns a reader must do without (absent from some inputs or configs)
    reasons: tuple[RejectReason, ...] = ()  # a rejects table: every reason its job writes
    # A table written run by run: each row names its run in `run_column`, and a run's rows are the table's
    # content only once `run_log` (a runs table) holds the run, the last committed for its dt (docs/reliability.md).
    run_column: str | None = None
    run_log: str | None = None

    def __post_init__(self):
        named = [*self.key, *([self.partition] if self.partition else []), *self.optional,
                 *([self.run_column] if self.run_column else [])]
        unknown = [c for c in named if c not in self.schema.names]
        if unknown:
            raise ValueError(f"table {self.name}: {unknown} are not columns of its schema")

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.schema.names)

    @property
    def required(self) -> tuple[str, ...]:
        """The columns every reader may count on."""
        return tuple(c for c in self.columns if c not in self.optional)


# What the model says about one pair, in relevance_scores: P(each grade), the expected grade, the argmax.
PROB_COLUMNS = tuple(f"p_{name}" for name in GRADE_NAMES)  # p_bad, p_less, p_good, p_excellent
PREDICTION = pa.schema([*((c, pa.float64()) for c in PROB_COLUMNS), ("score", pa.float64()), ("label", pa.int32())])
DIMENSIONS = ("advertiser", "industry")  # per-ad dimensions the irrelevant rate is cut by (score.yaml)

# inputs, loaded by build-lake from the sample (or written upstream)
VIDEOS = Table(
    "videos",
    pa.schema([("video_id", pa.string()), ("title", pa.string()), ("ocr_text", pa.string()),
               ("asr_text", pa.string()), ("frames", FRAMES), ("dt", pa.string())]),
    key=("video_id",), partition="dt", optional=("ocr_text", "asr_text"),
)
ADS = Table(
    "ads",
    pa.schema([("ad_id", pa.string()), ("video_id", pa.string()), *((d, pa.string()) for d in DIMENSIONS)]),
    key=("ad_id",), optional=DIMENSIONS,
)
QUERY_AD_PAIRS = Table(
    "query_ad_pairs",
    pa.schema([("dt", pa.string()), ("query", pa.string()), ("ad_id", pa.string()), ("impressions", pa.int64())]),
    key=("dt", "query", "ad_id"), partition="dt", optional=("impressions",),
)
LABELED_PAIRS = Table(
    "labeled_pairs",
    pa.schema([("query", pa.string()), ("title", pa.string()), ("label", pa.int32()), ("split", pa.string())]),
)

# pseudo-queries
KEYWORD_IDF = Table(
    "keyword_idf",
    pa.schema([("term", pa.string()), ("df", pa.int64()), ("n_docs", pa.int64()), ("idf", pa.float64())]),
    key=("term",),
)
PRETRAIN_PAIRS = Table(
    "pretrain_pairs",
    pa.schema([("video_id", pa.string()), ("dt", pa.string()), ("pseudo_query", pa.string()),
               ("keywords", pa.list_(pa.string())), ("context_text", pa.string()), ("video_text", pa.string()),
               ("frames", FRAMES), ("n_frames", pa.int32()), ("pseudo_query_run_id", pa.string())]),
    key=("video_id", "dt"), partition="dt", optional=("pseudo_query_run_id",),
    run_column="pseudo_query_run_id", run_log="pseudo_query_runs",
)
VIDEO_TEXTS = Table(  # one row per (video_id, dt): the model's text about the video, read by score and finetune
    "video_texts",
    pa.schema([("video_id", pa.string()), ("dt", pa.string()), ("video_text", pa.string()),
               ("text_settings", pa.string()),  # JSON of hcmrm.text.video_text.describe: keywords, max_chars, IDF
               ("text_fingerprint", pa.string()),  # its short digest: equal fingerprints, texts made the same way
               ("pseudo_query_run_id", pa.string()),
               # udfs.score.content_fingerprint of the text and the video's frames: scoring's carry-over key,
               # so a carried pair never reads frames (absent or null in tables written before: scoring hashes)
               ("content_fingerprint", pa.string()),
               # the Delta version of `videos` it was computed from: scoring trusts the fingerprint only while
               # no later commit touched the video's dt (null: Parquet input, never trusted)
               ("videos_version", pa.int64()),
               # the video's frame count and every unusable frame, checked once here within `frame_limits`
               # (FrameLimits.to_json): scoring rejects from them without decoding (null: not recorded)
               ("n_frames", pa.int32()), ("frame_problems", FRAME_PROBLEMS), ("frame_limits", pa.string())]),
    key=("video_id", "dt"), partition="dt",
    optional=("pseudo_query_run_id", "content_fingerprint", "videos_version", "n_frames", "frame_problems",
              "frame_limits"),
    run_column="pseudo_query_run_id", run_log="pseudo_query_runs",
)
PRETRAIN_REJECTS = Table(
    "pretrain_rejects",
    pa.schema([("video_id", pa.string()), ("dt", pa.string()), ("reason", pa.string()), ("rejected_at", TIMESTAMP),
               ("pseudo_query_run_id", pa.string())]),
    key=("video_id", "dt"), partition="dt", optional=("pseudo_query_run_id",),
    reasons=(MISSING_VIDEO_ID, DUPLICATE_VIDEO_ID, NO_TEXT, NO_KEYWORDS, BAD_FRAMES),
    run_column="pseudo_query_run_id", run_log="pseudo_query_runs",
)
PSEUDO_QUERY_RUNS = Table(  # appended last by each pseudo-queries run, one row per dt it built: the commit record
    "pseudo_query_runs",
    pa.schema([("dt", pa.string()), ("pseudo_query_run_id", pa.string()), ("finished_at", TIMESTAMP)]),
    key=("dt", "pseudo_query_run_id"),
)

# score, backfill, irrelevant-rate
RELEVANCE_SCORES = Table(
    "relevance_scores",
    pa.schema([("dt", pa.string()), ("query", pa.string()), ("ad_id", pa.string()), ("impressions", pa.int64()),
               *((d, pa.string()) for d in DIMENSIONS), *PREDICTION,
               ("model_name", pa.string()), ("model_version", pa.string()),
               ("run_id", pa.string()),  # the MLflow run that trained the model
               ("scoring_run_id", pa.string()), ("scored_at", TIMESTAMP),
               # udfs.score.ad_fingerprint of what the model read for the ad: a later day reuses the score of
               # an equal (query, ad_fingerprint, model version) instead of scoring it again (null: before this)
               ("ad_fingerprint", pa.string())]),
    key=("dt", "query", "ad_id"), partition="dt", optional=("impressions", *DIMENSIONS, "ad_fingerprint"),
    run_column="scoring_run_id", run_log="scoring_runs",
)
SCORING_REJECTS = Table(
    "scoring_rejects",
    pa.schema([("dt", pa.string()), ("query", pa.string()), ("ad_id", pa.string()), ("reason", pa.string()),
               ("model_version", pa.string()), ("scoring_run_id", pa.string()), ("rejected_at", TIMESTAMP)]),
    key=("dt", "query", "ad_id"), partition="dt",
    reasons=(NULL_AD_ID, NULL_QUERY, EMPTY_QUERY, UNKNOWN_AD, DUPLICATE_AD, NO_VIDEO, UNKNOWN_VIDEO,
             DUPLICATE_VIDEO, NO_VIDEO_TEXT, DUPLICATE_PAIR, EMPTY_TEXT, UNDECODABLE_FRAMES, OVERSIZED_FRAME),
    run_column="scoring_run_id", run_log="scoring_runs",
)
SCORING_RUNS = Table(  # appended last, one row per finished scoring of a day: its commit (readers, backfill)
    "scoring_runs",
    pa.schema([("dt", pa.string()), ("model_name", pa.string()), ("model_version", pa.string()),
               ("model_run_id", pa.string()), ("scoring_run_id", pa.string()),
               *((c, pa.int64()) for c in ("input_pairs", "scored_pairs", "rejected_pairs", "distinct_ads",
                                           "vision_encodes")),
               ("irrelevant_rate", pa.float64()), ("seconds", pa.float64()), ("finished_at", TIMESTAMP),
               ("input_version", pa.int64()),  # the Delta version of query_ad_pairs read (null: Parquet input)
               ("carried_pairs", pa.int64())]),  # of scored_pairs, those reused from earlier days (null: before this)
    key=("scoring_run_id",), optional=("input_version", "carried_pairs"),
)
# The audit's counts per group of irrelevant_rate_daily (sums, so any rollup is exact; hcmrm.rate_estimates):
AUDIT_COUNTS = (
    "audited_pairs",  # pairs of the group with a label in audit_labels
    "audited_irrelevant_pairs",  # of those, the raters' label is Bad or Less
    "audited_model_irrelevant_pairs",  # of those, the model's label is Bad or Less
    "audit_disagreements",  # of those, the raters and the model differ on irrelevant or not
)
AUDIT_ESTIMATES = (  # 95% intervals; null without enough audited pairs
    "audited_rate", "audited_rate_low", "audited_rate_high",  # the audit alone (Wilson)
    "ppi_rate", "ppi_rate_low", "ppi_rate_high",  # prediction-powered: the model's rate + the audited correction
)
IRRELEVANT_RATE_DAILY = Table(
    "irrelevant_rate_daily",
    pa.schema([("dt", pa.string()), ("model_name", pa.string()), ("model_version", pa.string()),
               *((d, pa.string()) for d in DIMENSIONS),
               *((c, pa.int64()) for c in ("pairs", "irrelevant_pairs", "impressions", "irrelevant_impressions")),
               ("rate", pa.float64()),  # irrelevant_pairs / pairs: the argmax label is Bad or Less
               ("impression_weighted_rate", pa.float64()),
               ("expected_irrelevant_pairs", pa.float64()),  # sum over the pairs of p_bad + p_less
               ("expected_rate", pa.float64()),  # expected_irrelevant_pairs / pairs: mean P(Bad or Less)
               *((c, pa.int64()) for c in AUDIT_COUNTS), *((c, pa.float64()) for c in AUDIT_ESTIMATES)]),
    key=("dt", "model_name", "model_version", *DIMENSIONS), partition="dt",
    # the expected rate and the audit's columns: absent from tables written before them
    optional=(*DIMENSIONS, "expected_irrelevant_pairs", "expected_rate", *AUDIT_COUNTS, *AUDIT_ESTIMATES),
)


# audits: a sample of a day's scored pairs for raters (files), their labels (a table), the rejected labels (a file)
AUDIT_SAMPLE = Table(  # written by audit-sample as CSV and Parquet; raters fill label and rater
    "audit_sample",
    pa.schema([("dt", pa.string()), ("query", pa.string()), ("ad_id", pa.string()), ("title", pa.string()),
               ("text", pa.string()),  # the video's OCR/ASR text, as the catalogue has it
               ("video_id", pa.string()), ("frame_ids", pa.string()),  # `<video_id>#<i>`, comma-separated
               *((d, pa.string()) for d in DIMENSIONS), ("label", pa.string()), ("rater", pa.string())]),
    key=("dt", "query", "ad_id"),
)
AUDIT_LABELS = Table(  # appended by audit-import: one human label per audited pair, whatever model scored it
    "audit_labels",
    pa.schema([("dt", pa.string()), ("query", pa.string()), ("ad_id", pa.string()),
               ("label", pa.int32()),  # 0..3, hcmrm.labels
               ("rater", pa.string()), ("labeled_at", TIMESTAMP),
               ("import_id", pa.string())]),  # the audit-import run that added the row
    key=("dt", "query", "ad_id"), partition="dt",
)
AUDIT_REJECTS = Table(  # the rows of an imported file that audit-import refused, with the file's text
    "audit_rejects",
    pa.schema([("dt", pa.string()), ("query", pa.string()), ("ad_id", pa.string()), ("label", pa.string()),
               ("rater", pa.string()), ("labeled_at", pa.string()), ("reason", pa.string())]),
    reasons=(MISSING_PAIR_KEY, BAD_GRADE, NO_RATER, BAD_LABELED_AT, UNKNOWN_PAIR, DUPLICATE_LABEL, ALREADY_LABELED),
)

TABLES = {t.name: t for t in (VIDEOS, ADS, QUERY_AD_PAIRS, LABELED_PAIRS, KEYWORD_IDF, PRETRAIN_PAIRS,
                              VIDEO_TEXTS, PRETRAIN_REJECTS, PSEUDO_QUERY_RUNS, RELEVANCE_SCORES, SCORING_REJECTS,
                              SCORING_RUNS, IRRELEVANT_RATE_DAILY, AUDIT_SAMPLE, AUDIT_LABELS, AUDIT_REJECTS)}
