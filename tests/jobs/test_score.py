"""The score job end to end in local Spark on a tiny registered model, and its transforms."""

from __future__ import annotations

import contextlib
import io
from argparse import Namespace

import numpy as np
import pytest
import torch
from PIL import Image

from hcmrm.tables import RELEVANCE_SCORES, SCORING_REJECTS, SCORING_RUNS
from tests.jobs.test_tables import assert_written_as_contract

pytestmark = pytest.mark.spark

DAY1, DAY2 = "2024-09-10", "2024-09-11"


def png(color) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (24, 16), color).save(out, format="PNG")
    return out.getvalue()


VIDEOS = [  # video_id, title, ocr_text, asr_text, frames
    ("v1", "红色连衣裙夏季新款", "显瘦 长裙", None, [png((250, 0, 0)), png((200, 30, 30))]),
    ("v2", "拍照手机旗舰", None, "夜景 拍照", [png((0, 0, 250))]),
    ("v3", "考研英语网课", "名师 直播", None, []),  # text-only
    ("v4", "坏帧视频", None, None, [b"\x00not an image"]),  # undecodable frames
    ("v5", "", None, None, []),  # no text, no frames
    ("v7", "新视频", None, None, []),  # pseudo-queries has not built its text yet
]
TEXTS = {  # video_texts as the pseudo-queries job wrote them; the job scores these, it never rebuilds them
    "v1": "红色连衣裙夏季新款 显瘦 长裙", "v2": "拍照手机旗舰 夜景", "v3": "考研英语网课 名师", "v4": "坏帧视频", "v5": "",
}
ADS = [("a1", "v1", "shop-1", "fashion"), ("a2", "v2", "phone-co", "digital"), ("a3", "v3", "edu", "education"),
       ("a4", "v4", "x", "other"), ("a5", "v5", "y", "other"), ("a6", "missing", "z", "other"),
       ("a7", "v7", "z", "other")]
PAIRS = {  # query, ad_id, impressions
    DAY1: [("连衣裙", "a1", 10), ("红色长裙", "a1", 3), ("手机", "a1", 1), ("拍照手机", "a2", 7), ("手机", "a2", 2),
           ("英语", "a3", 4), ("英语网课", "a3", 4), ("连衣裙", "a2", 1),
           (None, "a1", 1), ("   ", "a2", 1), ("连衣裙", "nope", 1), ("手机", "a4", 1), ("手机", "a5", 1),
           ("手机", "a6", 1), ("手机", "a7", 1), ("连衣裙", "a1", 2)],  # the last repeats (连衣裙, a1): a duplicate
    DAY2: [("手机", "a2", 5), ("英语", "a3", 1), ("裙子", "a1", 2)],
}
EXPECTED_REJECTS = {
    "null_query": 1, "empty_query": 1, "unknown_ad": 1, "undecodable_frames": 1, "empty_text": 1,
    "unknown_video": 1, "no_video_text": 1, "duplicate_pair": 1,
}


def write_lake(spark, settings, pairs=PAIRS, videos=VIDEOS, texts=TEXTS):
    from hcmrm.tables import VIDEO_TEXTS
    from jobs.tables import overwrite_table, spark_schema

    videos = spark.createDataFrame(
        [(*v, "2024-09-01") for v in videos],
        "video_id string, title string, ocr_text string, asr_text string, frames array<binary>, dt string",
    )
    overwrite_table(videos, settings.table("videos"), "dt")
    # No content_fingerprint, as in a table written before pseudo-queries wrote one: scoring hashes the frames.
    # No record of the frames either: the engine decodes them and decides.
    texts = [(v, "2024-09-01", t, "{}", "test") for v, t in texts.items()]
    texts.append(("v1", "2024-08-01", "an older date's text of v1", "{}", "test"))  # not v1's dt
    unrecorded = [None] * (len(VIDEO_TEXTS.columns) - len(texts[0]))
    overwrite_table(spark.createDataFrame([(*t, *unrecorded) for t in texts], spark_schema(VIDEO_TEXTS)),
                    settings.table(VIDEO_TEXTS.name), "dt")
    overwrite_table(spark.createDataFrame(ADS, "ad_id string, video_id string, advertiser string, industry string"),
                    settings.table("ads"))
    rows = [(d, q, a, i) for d, day_rows in pairs.items() for q, a, i in day_rows]
    overwrite_table(spark.createDataFrame(rows, "dt string, query string, ad_id string, impressions long"),
                    settings.table("query_ad_pairs"), "dt")


def register_tiny_model(settings, tmp_path, seed=0, alias=True) -> str:
    """A tiny HCMRM saved, logged to the temp MLflow, registered; champion when `alias`. Its version."""
    from hcmrm.model.checkpoint import save_model
    from hcmrm.model.network import build_model
    from hcmrm.tracking.registry import log_model_dir, register_version, set_alias
    from hcmrm.tracking.store import configure, use_experiment

    torch.manual_seed(seed)
    folder = tmp_path / f"model-{seed}"
    save_model(build_model("tiny").eval(), folder)
    mlflow = configure(settings)
    use_experiment(settings, "test-train")
    with mlflow.start_run() as run:
        source = log_model_dir(folder)
    version = register_version(settings, run.info.run_id, source)
    if alias:
        set_alias(settings, version.version)
    return str(version.version)


def job_args(settings, **extra) -> Namespace:
    values = dict(lake=settings.lake, tracking_uri=settings.tracking_uri, artifact_root=settings.artifact_root,
                  model_name=settings.model_name, spark_profile="test", conf=[], model_uri=None, model_version=None,
                  device="cpu", job_config=None)
    values.update(extra)
    if values["job_config"] is None:
        from jobs.scoring_config import CONF_FILE

        values["job_config"] = CONF_FILE
    return Namespace(**values)


def direct_scores(model_dir, rows):
    """(query, video text, frames) -> (probs, score) from the model called pair by pair: the reference."""
    from hcmrm.model.checkpoint import load_model
    from hcmrm.model.frames import decode_frames, stack_videos
    from hcmrm.model.tokenizer import Tokenizer

    model = load_model(model_dir)
    tokenizer, v = Tokenizer.from_config(model.config), model.config.vision
    out = []
    for query, text, frames in rows:
        video = decode_frames(frames, v.image_size, model.config.max_frames, v.mean, v.std)
        enc = tokenizer.encode_pairs([query], [text])
        with torch.inference_mode():
            memory = model.encode_video(*stack_videos([video], model.config.max_frames))
            r = model.relevance(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], memory)
        out.append((r.probs[0].numpy(), float(r.score[0])))
    return out


def make_settings(root):
    from hcmrm.settings import Settings

    return Settings(lake=str(root / "lake"), tracking_uri=f"sqlite:///{root / 'mlruns.db'}",
                    artifact_root=str(root / "mlartifacts"), model_name="hcmrm-test", spark_profile="test")


def read(spark, settings, table, date=None):
    df = spark.read.format("delta").load(settings.table(table))
    return df.where(df.dt == date) if date else df


KEYS = ["dt", "query", "ad_id", "p_bad", "p_less", "p_good", "p_excellent", "score", "label", "model_version"]


@pytest.fixture(scope="module")
def scored(spark, tmp_path_factory):
    """A lake with both days scored once by the champion: (settings, version, printed output, rows)."""
    from jobs import score

    root = tmp_path_factory.mktemp("score-job")
    settings = make_settings(root)
    write_lake(spark, settings)
    version = register_tiny_model(settings, root)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert score.run(job_args(settings, date=DAY1)) == 0
        assert score.run(job_args(settings, date=DAY2)) == 0
    rows = sorted(read(spark, settings, "relevance_scores").select(*KEYS).collect())
    return settings, version, printed.getvalue(), rows


def test_score_job_writes_the_models_scores_and_every_bad_row_to_rejects(spark, scored):
    from hcmrm.tracking.model_uri import resolve, version_uri

    settings, version, printed, _ = scored
    assert "distinct ads 3 in 3 rows, vision encodes 3" in printed

    scores = read(spark, settings, "relevance_scores", DAY1).toPandas()
    assert list(scores.columns) == [
        "dt", "query", "ad_id", "impressions", "advertiser", "industry", "p_bad", "p_less", "p_good", "p_excellent",
        "score", "label", "model_name", "model_version", "run_id", "scoring_run_id", "scored_at", "ad_fingerprint"]
    assert len(scores) == 8 and set(scores.model_version) == {version} and set(scores.model_name) == {"hcmrm-test"}
    assert scores.run_id.str.len().min() == 32  # the training run that logged the model

    rejects = read(spark, settings, "scoring_rejects", DAY1).toPandas()
    assert rejects.reason.str.split(":").str[0].value_counts().to_dict() == EXPECTED_REJECTS
    assert len(scores) + len(rejects) == len(PAIRS[DAY1])  # input = scored + rejected
    assert set(rejects.columns) >= {"dt", "query", "ad_id", "reason", "model_version", "rejected_at"}
    for table in (RELEVANCE_SCORES, SCORING_REJECTS, SCORING_RUNS):
        assert_written_as_contract(spark, settings, table)

    # Scores equal the model called directly, pair by pair, on the texts of video_texts, to 1e-5.
    model_dir = resolve(version_uri(settings.model_name, version), settings).folder
    video_of = {a[0]: a[1] for a in ADS}
    frames = {v[0]: v[-1] for v in VIDEOS}
    rows = [(q, TEXTS[video_of[a]], frames[video_of[a]]) for q, a in zip(scores["query"], scores["ad_id"])]
    for (probs, value), (_, got) in zip(direct_scores(model_dir, rows), scores.iterrows()):
        np.testing.assert_allclose(got[["p_bad", "p_less", "p_good", "p_excellent"]].to_numpy(float), probs, atol=1e-5)
        assert got["score"] == pytest.approx(value, abs=1e-5)
        assert got["label"] == int(np.argmax(probs))
    dup = scores[(scores["query"] == "连衣裙") & (scores.ad_id == "a1")]
    assert dup.impressions.tolist() == [10]  # of a repeated pair, the one with most impressions is kept

    # The job's MLflow run: counts, throughput, vision encodes next to distinct ads, the day's rate.
    from hcmrm.tracking.store import configure

    client = configure(settings).MlflowClient()
    exp = client.get_experiment_by_name("hcmrm-scoring")
    run = client.search_runs([exp.experiment_id], filter_string=f"params.date = '{DAY1}'")[0]
    m = run.data.metrics
    assert (m["input_pairs"], m["scored_pairs"], m["rejected_pairs"]) == (16, 8, 8)
    assert m["vision_encodes"] == m["distinct_ads"] == 3
    assert m["pairs_per_second"] > 0
    assert m["irrelevant_rate"] == pytest.approx((scores.label <= 1).mean())
    assert run.data.params["model_version"] == version and run.info.status == "FINISHED"


def test_a_rerun_replaces_the_day_with_the_same_rows_and_leaves_other_days(spark, scored):
    from jobs import score

    settings, _, _, first_rows = scored
    with contextlib.redirect_stdout(io.StringIO()):
        assert score.run(job_args(settings, date=DAY1)) == 0
    assert sorted(read(spark, settings, "relevance_scores").select(*KEYS).collect()) == first_rows
    assert read(spark, settings, "scoring_rejects", DAY1).count() == 8
    runs = read(spark, settings, "scoring_runs").toPandas()
    assert sorted(runs.dt) == [DAY1, DAY1, DAY2]
    day1, day2 = runs[runs.dt == DAY1], runs[runs.dt == DAY2].iloc[0]
    assert (day1.vision_encodes == day1.distinct_ads).all() and (day1.carried_pairs == 0).all()
    # DAY2's (手机, a2) and (英语, a3) were scored on DAY1: carried over; only a1's pair went through the engine.
    assert (day2.carried_pairs, day2.vision_encodes, day2.distinct_ads) == (2, 1, 3)


def test_a_scored_day_leaves_nothing_cached_in_the_session(spark, scored):
    # DAY2 carried pairs over from DAY1's scores: a cache entry left by a day would be re-planned by every
    # later write to the lake (a backfill scores many days in one session).
    assert spark._jsparkSession.sharedState().cacheManager().isEmpty()


def test_model_version_flag_picks_a_version_that_is_not_champion(spark, scored, tmp_path):
    from jobs import score

    settings, champion, _, _ = scored
    other = register_tiny_model(settings, tmp_path, seed=1, alias=False)
    with contextlib.redirect_stdout(io.StringIO()):
        assert score.run(job_args(settings, date=DAY2, model_version=int(other))) == 0
    got = read(spark, settings, "relevance_scores", DAY2).select("model_version").distinct().collect()
    assert [r[0] for r in got] == [other] != [champion]


def test_score_yaml_holds_the_defaults_and_the_device_flag_wins():
    from hcmrm.config import load
    from hcmrm.scoring import ScoringConfig
    from jobs.scoring_config import CONF_FILE, ScoreJobConfig

    assert load(ScoreJobConfig, CONF_FILE) == ScoreJobConfig()
    flagged = load(ScoreJobConfig, CONF_FILE, {"device": "cpu", "engine.pairs_per_batch": 64})
    assert flagged == ScoreJobConfig(device="cpu", engine=ScoringConfig(pairs_per_batch=64))


def test_validate_pairs_gives_each_bad_row_its_reason(spark):
    from pyspark.testing import assertDataFrameEqual

    from jobs.scoring_plan import validate_pairs

    pairs = spark.createDataFrame(
        [("q", "a1", 1), ("q", "a1", 5), (None, "a1", 1), ("\u3000", "a1", 1), ("q", None, 1), ("q", "a9", 1),
         ("q", "a2", 1), ("q", "a3", 1), ("q", "dup", 1), ("q", "a4", 1), ("q", "a5", 1)],
        "query string, ad_id string, impressions long",
    )
    ads = spark.createDataFrame([("a1", "v1"), ("a2", None), ("a3", "gone"), ("dup", "v1"), ("dup", "v1"),
                                 ("a4", "v2"), ("a5", "v3")], "ad_id string, video_id string")
    videos = spark.createDataFrame([("v1", "d1"), ("v2", "d1"), ("v3", "d2")], "video_id string, dt string")
    texts = spark.createDataFrame([("v1", "d1", "文本"), ("v3", "d1", "另一天的文本")],
                                  "video_id string, dt string, video_text string")
    got = validate_pairs(pairs, ads, videos, texts).select("query", "ad_id", "impressions", F_code("reason"))
    expected = spark.createDataFrame(
        [("q", "a1", 5, None), ("q", "a1", 1, "duplicate_pair"), (None, "a1", 1, "null_query"),
         ("\u3000", "a1", 1, "empty_query"), ("q", None, 1, "null_ad_id"), ("q", "a9", 1, "unknown_ad"),
         ("q", "a2", 1, "no_video"), ("q", "a3", 1, "unknown_video"), ("q", "dup", 1, "duplicate_ad"),
         ("q", "a4", 1, "no_video_text"), ("q", "a5", 1, "no_video_text")],  # a5: a text of another dt only
        "query string, ad_id string, impressions long, reason string",
    )
    assertDataFrameEqual(got, expected)


def test_ad_major_gives_one_row_per_ad_with_its_queries_and_frames(spark):
    from pyspark.sql import functions as F

    from jobs.scoring_plan import ad_major, video_content

    valid = spark.createDataFrame([("q1", "a1", "v1", "s"), ("q2", "a1", "v1", "s"), ("q3", "a2", "v1", "t"),
                                   ("q4", "a3", "v2", "u")],
                                  "query string, ad_id string, video_id string, advertiser string")
    videos = spark.createDataFrame([("v1", "d1", [b"x"]), ("v2", "d1", [b"z"]), ("v9", "d1", [b"y"])],
                                   "video_id string, dt string, frames array<binary>")
    # v2's frames are already rejected by the record pseudo-queries made: they are not carried to the engine
    keyed = spark.createDataFrame([("v1", "d1", "视频文本", "fp1", None), ("v2", "d1", "坏", "fp2", "bad frame 0"),
                                   ("v9", "d1", "别的", "fp9", None)],
                                  "video_id string, dt string, video_text string, ad_fingerprint string, "
                                  "frame_reason string")
    rows = ad_major(valid, video_content(valid, videos, keyed, ["d1"]), ["query"], ["advertiser"]).select(
        "ad_id", "advertiser", F.array_sort(F.col("pairs.query")).alias("queries"), "video_text", "frames",
        "frame_reason").orderBy("ad_id").collect()
    assert [(r.ad_id, r.advertiser, r.queries, r.video_text, r.frames, r.frame_reason) for r in rows] == [
        ("a1", "s", ["q1", "q2"], "视频文本", [b"x"], None), ("a2", "t", ["q3"], "视频文本", [b"x"], None),
        ("a3", "u", ["q4"], "坏", None, "bad frame 0")]


def test_ad_major_cuts_a_hot_ad_into_rows_of_at_most_pairs_per_row_each_with_the_frames(spark):
    from pyspark.sql import functions as F

    from jobs.scoring_plan import ad_major, video_content

    valid = spark.createDataFrame([(f"q{i}", "hot", "v1") for i in range(5)] + [("q0", "cold", "v1")],
                                  "query string, ad_id string, video_id string")
    videos = spark.createDataFrame([("v1", "d1", [b"x"])], "video_id string, dt string, frames array<binary>")
    keyed = spark.createDataFrame([("v1", "d1", "视频文本", "fp1", None)],
                                  "video_id string, dt string, video_text string, ad_fingerprint string, "
                                  "frame_reason string")
    rows = ad_major(valid, video_content(valid, videos, keyed, ["d1"]), ["query"], [], pairs_per_row=2).select(
        "ad_id", F.col("pairs.query").alias("queries"), "frames").collect()
    hot = [r for r in rows if r.ad_id == "hot"]
    assert sorted(len(r.queries) for r in hot) == [1, 2, 2] and all(r.frames == [b"x"] for r in hot)
    assert sorted(q for r in hot for q in r.queries) == [f"q{i}" for i in range(5)]  # each pair in one row
    assert [r.queries for r in rows if r.ad_id == "cold"] == [["q0"]]


def test_a_day_cut_into_one_pair_per_row_scores_the_same_with_one_vision_encode_per_row(spark, scored, tmp_path):
    from jobs import score
    from jobs.scoring_config import CONF_FILE

    _, _, _, whole = scored
    settings = make_settings(tmp_path)
    write_lake(spark, settings)
    register_tiny_model(settings, tmp_path)
    conf = tmp_path / "score.yaml"
    conf.write_text(CONF_FILE.read_text().replace("pairs_per_row: 4096", "pairs_per_row: 1"))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert score.run(job_args(settings, date=DAY1, job_config=conf)) == 0
    assert "distinct ads 3 in 8 rows, vision encodes 8" in printed.getvalue()

    cut = read(spark, settings, "relevance_scores", DAY1).select(*KEYS).collect()
    expected = {(r.query, r.ad_id): r for r in whole if r.dt == DAY1}
    assert {(r.query, r.ad_id) for r in cut} == expected.keys()
    for r in cut:
        assert [r.p_bad, r.p_less, r.p_good, r.p_excellent] == pytest.approx(
            [expected[r.query, r.ad_id][k] for k in ("p_bad", "p_less", "p_good", "p_excellent")], abs=1e-5)


def F_code(column):
    from jobs.tables import reason_code

    return reason_code(column).alias(column)
