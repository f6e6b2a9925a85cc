"""Incremental scoring: a pair scored on an earlier day with the same ad content and model version is carried
over, and the day's rows are those a full re-score writes; anything that changes the model input is scored."""

from __future__ import annotations

import contextlib
import io

import pytest

from tests.jobs.test_score import DAY1, DAY2, PAIRS, TEXTS, VIDEOS, job_args, make_settings, png, \
    register_tiny_model, write_lake

pytestmark = [pytest.mark.spark, pytest.mark.slow]  # six scorings of a day: ~3 min on the shared machine

PROBS = ["p_bad", "p_less", "p_good", "p_excellent", "score"]
# DAY2 repeats four pairs DAY1 scored, adds one new pair and the same kinds of bad rows as DAY1.
REPEATED = [("连衣裙", "a1", 5), ("手机", "a2", 2), ("英语", "a3", 1), ("连衣裙", "a2", 3)]
DAY2_PAIRS = [*REPEATED, ("裙子", "a1", 2), ("手机", "a4", 1), ("手机", "a5", 1), ("手机", "a7", 1), (None, "a1", 1),
              ("连衣裙", "a1", 1)]  # undecodable frames, empty text, no video text, null query, duplicate pair


def score_day2(spark, settings, **flags):
    """Score DAY2; (its committed scores by (query, ad_id), its rejects as a set, the run's carried_pairs)."""
    from jobs import score
    from jobs.tables import read_table

    with contextlib.redirect_stdout(io.StringIO()):
        assert score.run(job_args(settings, date=DAY2, **flags)) == 0

    def day(name):
        df = read_table(spark, settings.table(name))
        return df.where(df.dt == DAY2).toPandas()

    scores, rejects, runs = day("relevance_scores"), day("scoring_rejects"), day("scoring_runs")
    run = runs.sort_values("finished_at").iloc[-1]
    assert set(scores.scoring_run_id) == set(rejects.scoring_run_id) == {run.scoring_run_id}
    return ({(r.query, r.ad_id): r for r in scores.itertuples()},
            set(zip(rejects["query"], rejects.ad_id, rejects.reason)), int(run.carried_pairs))


def assert_same_rows(carried, full):
    assert carried.keys() == full.keys()
    for key, row in carried.items():
        assert [getattr(row, c) for c in PROBS] == pytest.approx([getattr(full[key], c) for c in PROBS], abs=1e-6)
        for column in ("label", "impressions", "advertiser", "industry", "model_name", "model_version", "run_id",
                       "ad_fingerprint"):
            assert getattr(row, column) == getattr(full[key], column), (key, column)


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    """DAY1 scored by the champion (the earlier day), DAY2 not yet: (settings, champion version)."""
    from jobs import score

    root = tmp_path_factory.mktemp("incremental")
    settings = make_settings(root)
    write_lake(spark, settings, {DAY1: PAIRS[DAY1], DAY2: DAY2_PAIRS})
    version = register_tiny_model(settings, root)
    with contextlib.redirect_stdout(io.StringIO()):
        assert score.run(job_args(settings, date=DAY1)) == 0
    return settings, version


def test_a_day_with_earlier_scores_carries_them_over_and_writes_the_rows_of_a_full_rescore(spark, lake):
    from hcmrm.tracking.store import configure

    settings, _ = lake
    full, full_rejects, none_carried = score_day2(spark, settings, full_rescore=True)
    carried, rejects, carried_pairs = score_day2(spark, settings)
    assert none_carried == 0 and carried_pairs == len(REPEATED)
    assert_same_rows(carried, full)
    assert rejects == full_rejects  # the bad rows are rejected for the same reasons either way
    assert {r.split(":")[0] for _, _, r in rejects} == {"undecodable_frames", "empty_text", "no_video_text",
                                                        "null_query", "duplicate_pair"}

    client = configure(settings).MlflowClient()
    experiment = client.get_experiment_by_name("hcmrm-scoring").experiment_id
    runs = client.search_runs([experiment], f"params.date = '{DAY2}'", order_by=["attributes.start_time DESC"])
    assert runs[0].data.metrics["carried_pairs"] == len(REPEATED)
    assert runs[0].data.metrics["vision_encodes"] == 1  # only a1 has a pair to score (裙子); a4 is rejected


def test_a_changed_frame_or_text_or_another_model_version_is_scored_again(spark, lake, tmp_path):
    settings, _ = lake
    videos = [(v, *rest[:-1], [png((0, 250, 0))]) if v == "v2" else (v, *rest) for v, *rest in VIDEOS]
    write_lake(spark, settings, {DAY1: PAIRS[DAY1], DAY2: DAY2_PAIRS}, videos, {**TEXTS, "v3": "考研英语网课 新版"})
    full, full_rejects, _ = score_day2(spark, settings, full_rescore=True)
    carried, rejects, carried_pairs = score_day2(spark, settings)
    assert carried_pairs == 1  # (连衣裙, a1): a1's video is as DAY1 scored it; a2's frame and a3's text changed
    assert_same_rows(carried, full)
    assert rejects == full_rejects

    other = register_tiny_model(settings, tmp_path, seed=1, alias=False)
    by_other, _, carried_pairs = score_day2(spark, settings, model_version=int(other))
    assert carried_pairs == 0 and {r.model_version for r in by_other.values()} == {other}


def counting_content_fingerprint(spark, monkeypatch):
    """An accumulator of the job's frame hashing: scoring_plan.content_fingerprint, each evaluation counted."""
    from pyspark.sql import functions as F

    from jobs import scoring_plan
    from udfs.score import content_fingerprint

    hashed = spark.sparkContext.accumulator(0)

    def counted(video_text, frames):
        def seen(fingerprint):
            hashed.add(1)
            return fingerprint
        return F.udf(seen, "string")(content_fingerprint(video_text, frames))

    monkeypatch.setattr(scoring_plan, "content_fingerprint", counted)
    return hashed


def fingerprints_upstream(spark, settings, limits=None, problems=None):
    """video_texts as pseudo-queries writes them: each text with its video's content fingerprint and the Delta
    version of `videos` they were computed from, and the record of its frames (frame_problems within `limits`,
    or the given `problems` {video_id: [(index, oversized, problem)]})."""
    from pyspark.sql import functions as F

    from hcmrm.model.frames import DEFAULT_LIMITS, frame_problems
    from hcmrm.tables import VIDEO_TEXTS
    from jobs.tables import overwrite_table, read_table, spark_schema, table_version
    from udfs.score import content_fingerprint

    problems = problems or {}
    limits = limits or DEFAULT_LIMITS

    @F.udf(spark_schema(VIDEO_TEXTS)["frame_problems"].dataType)
    def recorded(video_id, frames):
        return problems.get(video_id, [tuple(p) for p in frame_problems(frames, limits)])

    version = table_version(spark, settings.table("videos"))
    frames = read_table(spark, settings.table("videos"), version).select("video_id", "dt", "frames")
    texts = read_table(spark, settings.table(VIDEO_TEXTS.name)).drop(*VIDEO_TEXTS.optional[1:])
    rows = (texts.join(frames, ["video_id", "dt"], "left")
            .withColumn("content_fingerprint", content_fingerprint(F.col("video_text"), F.col("frames")))
            .withColumn("videos_version", F.lit(version).cast("long"))
            .withColumn("n_frames", F.coalesce(F.size("frames"), F.lit(0)).cast("int"))
            .withColumn("frame_problems", recorded("video_id", "frames"))
            .withColumn("frame_limits", F.lit(limits.to_json())).select(*VIDEO_TEXTS.columns))
    overwrite_table(rows.localCheckpoint(), settings.table(VIDEO_TEXTS.name), "dt")


def test_with_the_fingerprints_of_pseudo_queries_no_frame_is_hashed_and_the_rows_are_a_full_rescores(
        spark, lake, monkeypatch):
    settings, _ = lake
    write_lake(spark, settings, {DAY1: PAIRS[DAY1], DAY2: DAY2_PAIRS})
    fingerprints_upstream(spark, settings)
    full, full_rejects, _ = score_day2(spark, settings, full_rescore=True)
    hashed = counting_content_fingerprint(spark, monkeypatch)
    carried, rejects, carried_pairs = score_day2(spark, settings)
    assert hashed.value == 0 and carried_pairs == len(REPEATED)  # DAY1's fingerprints, hashed then, match
    assert_same_rows(carried, full)
    assert rejects == full_rejects


def test_a_video_dt_changed_since_pseudo_queries_ran_is_hashed_again_not_trusted(spark, lake, monkeypatch):
    from jobs.tables import overwrite_table

    settings, _ = lake
    write_lake(spark, settings, {DAY1: PAIRS[DAY1], DAY2: DAY2_PAIRS})
    fingerprints_upstream(spark, settings)
    # v2's frame replaced after video_texts were built (pseudo-queries not run again): its fingerprint is stale.
    changed = [(v, *rest[:-1], [png((0, 250, 0))], "2024-09-01") if v == "v2" else (v, *rest, "2024-09-01")
               for v, *rest in VIDEOS]
    overwrite_table(spark.createDataFrame(changed, "video_id string, title string, ocr_text string, "
                                                   "asr_text string, frames array<binary>, dt string"),
                    settings.table("videos"), "dt")
    hashed = counting_content_fingerprint(spark, monkeypatch)
    _, _, carried_pairs = score_day2(spark, settings)
    assert hashed.value > 0  # the dt's fingerprints are not trusted: its videos' frames are hashed
    assert carried_pairs == 2  # (连衣裙, a1) and (英语, a3); a2's two pairs are scored again


def test_a_day_with_earlier_scores_hashes_each_needed_video_once(spark, lake, monkeypatch):
    """With no fingerprints in video_texts (a table written before), the frames are hashed here: once a day
    for each needed video, not once per use (the lookup's misses and carried rows, the engine's rows)."""
    from pyspark.sql import functions as F

    from jobs import scoring_plan as plan

    settings, _ = lake
    write_lake(spark, settings, {DAY1: PAIRS[DAY1], DAY2: DAY2_PAIRS})
    pairs, ads, videos, texts, _ = plan.read_inputs(spark, settings, DAY2)
    valid = plan.validate_pairs(pairs, ads, videos, texts).where(F.col("reason").isNull())
    needed = plan.video_texts_keyed(spark, settings, valid, videos, texts, plan.needed_dates(valid, videos)).count()
    hashed = counting_content_fingerprint(spark, monkeypatch)
    _, _, carried_pairs = score_day2(spark, settings)
    assert carried_pairs > 0 and needed > 0
    assert hashed.value == needed


def test_a_frame_problem_recorded_upstream_rejects_the_ad_without_decoding_and_only_within_the_same_limits(
        spark, lake):
    from hcmrm.model.frames import FrameLimits

    settings, _ = lake
    write_lake(spark, settings, {DAY1: PAIRS[DAY1], DAY2: DAY2_PAIRS})
    decided_by_engine = score_day2(spark, settings, full_rescore=True)[1]
    fingerprints_upstream(spark, settings)  # v4's junk frame recorded as pseudo-queries finds it
    assert score_day2(spark, settings, full_rescore=True)[1] == decided_by_engine  # the same reject text

    # v1's frames decode, so a reject for them can only come from the record; v2's problem is on a frame
    # the engine does not sample (index 5 of 1 frame): no reject.
    made_up = {"v1": [(1, True, "recorded upstream")], "v2": [(5, False, "not sampled")]}
    fingerprints_upstream(spark, settings, problems=made_up)
    scores, rejects, _ = score_day2(spark, settings, full_rescore=True)
    recorded = "oversized_frame: frame 1: recorded upstream"
    assert {(q, r) for q, a, r in rejects if a == "a1" and "frame" in r} == {("裙子", recorded), ("连衣裙", recorded)}
    assert ("手机", "a2") in scores
    fingerprints_upstream(spark, settings, FrameLimits(max_bytes=10**9), made_up)  # not the engine's limits
    scores, rejects, _ = score_day2(spark, settings, full_rescore=True)
    assert ("裙子", "a1") in scores and not {a for _, a, r in rejects if "frame" in r} & {"a1", "a2"}


def test_the_recorded_reason_counts_only_the_frames_the_engine_samples(spark):
    from pyspark.sql import functions as F

    from hcmrm.model.frames import DEFAULT_LIMITS, sample_indices
    from hcmrm.tables import VIDEO_TEXTS
    from jobs.scoring_plan import recorded_frame_reason
    from jobs.tables import spark_schema

    problems = spark_schema(VIDEO_TEXTS)["frame_problems"].dataType.simpleString()
    rows = [(n, i) for n in (1, 3, 4, 5, 7, 9, 13, 40) for i in range(n)]  # one problem at frame i of n
    df = spark.createDataFrame(rows, "n_frames int, i int").select(
        "n_frames", "i", F.array(F.struct(F.col("i").alias("index"), F.lit(False).alias("oversized"),
                                          F.lit("bad").alias("problem"))).cast(problems).alias("frame_problems"),
        F.lit(DEFAULT_LIMITS.to_json()).alias("frame_limits"))
    got = {(r.n_frames, r.i): r.reason for r in df.select("n_frames", "i", recorded_frame_reason(
        DEFAULT_LIMITS, 4).alias("reason")).collect()}
    assert got == {(n, i): f"undecodable_frames: frame {i}: bad" if i in sample_indices(n, 4) else None
                   for n, i in rows}
