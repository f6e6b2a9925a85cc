"""The Spark adapter: one Arrow batch of ads in, one Arrow batch of pairs out (tested without a JVM)."""

import io

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image
from pyspark.sql.types import ArrayType, BinaryType, LongType, StringType, StructField, StructType

from hcmrm.model.checkpoint import save_model
from hcmrm.model.network import build_model
from hcmrm.scoring import AdPairs, Scorer, ScoringConfig
from udfs import score as udf


def png(color) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (20, 20), color).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("udf") / "model"
    save_model(build_model("tiny").eval(), folder)
    return folder


PAIR = pa.struct([("query", pa.string()), ("impressions", pa.int64())])
TEXTS = ["红色连衣裙 夏季 新款", "考研英语", "坏视频", ""]  # video_text as the pseudo-queries job wrote it
AD_ROWS = pa.RecordBatch.from_pydict(
    {
        "ad_id": ["a1", "a2", "a3", "a4"],
        "advertiser": ["s1", "s2", "s3", "s4"],
        "video_text": TEXTS,
        "frames": [[png((255, 0, 0))], [], [b"junk"], []],
        "pairs": [[{"query": "裙子", "impressions": 3}, {"query": "手机", "impressions": None}],
                  [{"query": "英语", "impressions": 1}], [{"query": "x", "impressions": 1}],
                  [{"query": "y", "impressions": 2}]],
    },
    schema=pa.schema([("ad_id", pa.string()), ("advertiser", pa.string()), ("video_text", pa.string()),
                      ("frames", pa.list_(pa.binary())), ("pairs", pa.list_(PAIR))]),
)


def test_a_batch_of_ads_becomes_one_row_per_pair_with_scores_or_a_reason(model_dir):
    scorer = Scorer.from_dir(model_dir, ScoringConfig())
    out = udf.score_batch(AD_ROWS, scorer).to_pydict()
    assert out["ad_id"] == ["a1", "a1", "a2", "a3", "a4"]
    assert out["advertiser"] == ["s1", "s1", "s2", "s3", "s4"]  # ad-level columns repeat per pair
    assert out["query"] == ["裙子", "手机", "英语", "x", "y"] and out["impressions"] == [3, None, 1, 1, 2]
    assert "video_text" not in out and "frames" not in out  # video content stays behind
    assert out["reason"][:3] == [None] * 3
    assert out["reason"][3].startswith("undecodable_frames: frame 0")
    assert out["reason"][4] == udf.EMPTY_TEXT
    assert out["p_bad"][3] is None and out["label"][4] is None
    assert sum(out["vision_encodes"]) == 2  # a1 and a2 (text-only) went through the vision tower once each

    # The same numbers as the engine given the same ads and the texts as they came (no text rebuilt).
    engine = Scorer.from_dir(model_dir, ScoringConfig()).score([
        AdPairs("a1", TEXTS[0], [png((255, 0, 0))], ["裙子", "手机"]),
        AdPairs("a2", TEXTS[1], [], ["英语"]),
    ])
    probs = np.array([out[f"p_{k}"][:3] for k in ("bad", "less", "good", "excellent")]).T
    np.testing.assert_allclose(probs, np.concatenate([engine[0].probs, engine[1].probs]), atol=1e-6)
    assert out["label"][:3] == probs.argmax(1).tolist()
    np.testing.assert_allclose(out["score"][:3], np.concatenate([engine[0].score, engine[1].score]), atol=1e-6)


def test_a_reason_recorded_upstream_rejects_the_ad_without_its_frames_after_the_empty_text_check(model_dir):
    recorded = ["oversized_frame: frame 0: 13000x13000 = ...", None, None, "undecodable_frames: frame 3: x"]
    batch = AD_ROWS.append_column("frame_reason", pa.array(recorded)).set_column(
        3, "frames", pa.array([None, [], [b"junk"], []], pa.list_(pa.binary())))
    out = udf.score_batch(batch, Scorer.from_dir(model_dir, ScoringConfig())).to_pydict()
    assert "frame_reason" not in out
    assert out["reason"] == [recorded[0], recorded[0], None, out["reason"][3], udf.EMPTY_TEXT]
    assert out["reason"][3].startswith("undecodable_frames: frame 0")  # no record: the engine decoded and decided
    assert sum(out["vision_encodes"]) == 1  # a2 only


def test_output_schema_is_ad_columns_then_pair_fields_then_scores():
    ads = StructType([
        StructField("ad_id", StringType()), StructField("video_id", StringType()), StructField("video_text", StringType()),
        StructField("frames", ArrayType(BinaryType())),
        StructField("pairs", ArrayType(StructType([StructField("query", StringType()),
                                                   StructField("impressions", LongType())]))),
    ])
    assert udf.output_schema(ads).fieldNames() == [
        "ad_id", "video_id", "query", "impressions", "p_bad", "p_less", "p_good", "p_excellent", "score", "label",
        "reason", "vision_encodes"]
    with pytest.raises(ValueError, match="pairs"):
        udf.output_schema(StructType([StructField("ad_id", StringType())]))


def test_a_worker_loads_the_model_once_and_keeps_it(model_dir):
    threads = torch.get_num_threads()
    try:
        ref = udf.ModelRef("m", "1", "run", str(model_dir))
        first = udf.worker_scorer(ref, ScoringConfig(), "cpu")
        assert udf.worker_scorer(ref, ScoringConfig(), "cpu") is first
        assert first.device == torch.device("cpu") and torch.get_num_threads() == 1  # one thread per worker
        other = udf.worker_scorer(udf.ModelRef("m", "2", "run", str(model_dir)), ScoringConfig(), "cpu")
        assert other is not first and udf._WORKER["scorer"] is other  # one model per worker: the old one is dropped
    finally:
        udf._WORKER.clear()
        torch.set_num_threads(threads)


def test_task_device_is_the_cpu_without_cuda():
    assert udf.task_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert udf.task_device("auto") == torch.device("cpu")
        with pytest.raises(RuntimeError, match="CUDA"):
            udf.task_device("cuda")


def test_the_tasks_gpu_address_is_looked_up_among_the_gpus_cuda_makes_visible():
    assert udf.cuda_ordinal("3", None) == 3  # nothing narrowed: torch numbers the GPUs as the host does
    assert udf.cuda_ordinal("5", "3,5") == 1  # torch's cuda:1 is the host's GPU 5
    assert udf.cuda_ordinal("GPU-8a1f", "GPU-77, GPU-8a1f") == 1  # addresses may be UUIDs
    with pytest.raises(RuntimeError, match="CUDA_VISIBLE_DEVICES=3 hides"):
        udf.cuda_ordinal("5", "3")


def test_the_engine_threads_follow_the_tasks_cpus_unless_the_config_sets_them():
    on_gpu = udf.worker_config(ScoringConfig(), "cuda", cpus=12)
    assert (on_gpu.torch_threads, on_gpu.prepare_threads) == (12, 8)  # prepare threads capped at 8
    on_cpu = udf.worker_config(ScoringConfig(), "cpu", cpus=1)
    assert (on_cpu.torch_threads, on_cpu.prepare_threads) == (1, 0)  # a task per core: none spare
    fixed = udf.worker_config(ScoringConfig(torch_threads=2, prepare_threads=3), "cuda", cpus=12)
    assert (fixed.torch_threads, fixed.prepare_threads) == (2, 3)


def test_only_executors_with_gpus_give_the_scoring_stage_a_resource_profile():
    from pyspark import SparkConf

    def conf(**values):
        return SparkConf(loadDefaults=False).setAll([(k.replace("_", "."), v) for k, v in values.items()])

    assert udf.scoring_profile(conf(spark_master="local[4]", spark_executor_resource_gpu_amount="1")) is None
    assert udf.scoring_profile(conf(spark_master="yarn")) is None  # CPU executors: a task per core everywhere
    gpus = conf(spark_master="yarn", spark_executor_resource_gpu_amount="2", spark_executor_cores="16")
    profile = udf.scoring_profile(gpus)
    task = {name: request.amount for name, request in profile.taskResources.items()}
    assert task == {"cpus": 16 // 2, "gpu": 1.0} and profile.executorResources == {}
    # With dynamic allocation, Spark has to start executors for the profile: it names their shape too.
    dynamic = udf.scoring_profile(gpus.set("spark.dynamicAllocation.enabled", "true"))
    assert {name: r.amount for name, r in dynamic.executorResources.items()} == {"cores": 16, "gpu": 2}


def test_model_ref_prefers_the_unpacked_archive_and_fails_in_one_line_without_any(tmp_path, monkeypatch):
    from pyspark import SparkFiles

    driver, root = tmp_path / "driver-model", tmp_path / "spark-files"
    driver.mkdir()
    (root / "m.zip").mkdir(parents=True)  # where Spark unpacks an archive named m.zip
    monkeypatch.setattr(SparkFiles, "_root_directory", str(root))
    monkeypatch.setattr(SparkFiles, "_is_running_on_worker", True)  # as in an executor's Python worker
    assert udf.ModelRef("m", "1", "run", str(driver), "m.zip").folder() == str(root / "m.zip")
    assert udf.ModelRef("m", "1", "run", str(driver), "other.zip").folder() == str(driver)  # local mode fallback
    monkeypatch.setattr(SparkFiles, "_root_directory", None)
    gone = udf.ModelRef("m", "1", "run", str(tmp_path / "gone"), "m.zip")
    with pytest.raises(FileNotFoundError, match="m.zip is not unpacked"):
        gone.folder()


@pytest.mark.spark
def test_an_ads_fingerprint_changes_with_the_text_a_frame_their_order_and_the_salt_only(spark):
    from pyspark.sql import functions as F

    red, blue = png((200, 0, 0)), png((0, 0, 200))
    ads = spark.createDataFrame(
        [("base", "红色连衣裙", [red, blue]), ("same", "红色连衣裙", [red, blue]), ("text", "红色长裙", [red, blue]),
         ("frame", "红色连衣裙", [red, red]), ("order", "红色连衣裙", [blue, red]),
         ("null text", None, []), ("empty text", "", None), ("null frame", "", [None])],
        "ad string, video_text string, frames array<binary>")
    got = {r.ad: (r.fp, r.salted) for r in ads.select(
        "ad", udf.ad_fingerprint(udf.content_fingerprint(F.col("video_text"), F.col("frames")), "").alias("fp"),
        udf.ad_fingerprint(udf.content_fingerprint(F.col("video_text"), F.col("frames")), "other settings")
        .alias("salted")).collect()}
    assert got["base"] == got["same"]
    assert len({got[k][0] for k in ("base", "text", "frame", "order", "null text", "null frame")}) == 6
    assert got["null text"] == got["empty text"]  # score_batch reads both as an ad with no text and no frames
    assert got["base"][0] != got["base"][1] and len(got["base"][0]) == 64
