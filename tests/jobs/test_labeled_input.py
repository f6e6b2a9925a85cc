"""Fine-tuning's input: training pairs staged as shards (a table by Spark's executors), dev pairs read whole."""

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from hcmrm.errors import InputDataError
from hcmrm.train.shards import read_shard
from jobs import finetune
from jobs.common import build_parser
from jobs.labeled_input import split_rows, training_data, with_video_text

PRODUCTS = ["手机壳", "耳机", "跑鞋", "茶叶"]


def rows(split=None):
    out = [{"query": p, "title": f"新款{p} 包邮", "label": g} for p in PRODUCTS for g in (0, 1, 2, 3)]
    return [dict(r, split=split) for r in out] if split else out


def write_jsonl(path, items):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in items) + "\n", encoding="utf-8")
    return str(path)


def no_spark():
    raise AssertionError("plain files with titles need no Spark")


def staged_labels(data):
    return [r["label"] for s in data.shards for r in read_shard(s, ["label"])]


def test_each_source_is_staged_through_its_label_map_and_dev_takes_their_dev_rows(settings, tmp_path):
    kuake = write_jsonl(tmp_path / "kuake.jsonl", rows("train") + rows("dev"))
    v0 = write_jsonl(tmp_path / "v0.jsonl", [{"query": "茶叶", "title": f"茶叶{r}", "relevant": str(r), "split": split}
                                             for r in (0, 1, 2, 3) for split in ("train", "dev")])
    args = build_parser(finetune).parse_args(["--train", kuake, "--train", f"qbqtc={v0}", "--lake", settings.lake])
    data = training_data(args, settings, tmp_path / "input", no_spark)
    assert data.train_rows == 16 + 3 and staged_labels(data)[16:] == [0, 1, 3]  # QBQTC's 2 is Excellent
    assert len({s.path for s in data.shards}) == 2 and len(data.shards) >= 2  # one file per source, cut in groups
    assert len(data.dev) == 16 + 3 and data.dev["label"].tolist()[16:] == [0, 1, 3]
    assert data.rejects["set"].tolist() == ["train", "dev"]  # QBQTC has no grade 3: quarantined, with its reason
    assert set(data.rejects["reason"]) == {"label 3 not in the source's label map [0, 1, 2]"}
    assert "frames" not in data.rejects.columns


def test_a_rerun_with_the_same_inputs_streams_the_same_files_and_a_changed_input_is_staged_again(settings, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", rows())
    args = build_parser(finetune).parse_args(["--train", train, "--lake", settings.lake])
    first = training_data(args, settings, tmp_path / "input", no_spark)
    staged = {p: p.stat().st_mtime_ns for p in (tmp_path / "input").rglob("*.parquet")}
    again = training_data(args, settings, tmp_path / "input", no_spark)
    assert again.shards == first.shards and staged == {p: p.stat().st_mtime_ns for p in staged}

    write_jsonl(tmp_path / "train.jsonl", rows()[:8])
    assert training_data(args, settings, tmp_path / "input", no_spark).train_rows == 8


def test_a_source_with_no_usable_row_stops_with_one_line(settings, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"query": "", "title": "t", "label": 1}])
    args = build_parser(finetune).parse_args(["--train", train, "--lake", settings.lake])
    with pytest.raises(SystemExit, match=r"no usable training pairs \(1 rejected\)"):
        training_data(args, settings, tmp_path / "input", no_spark)


@pytest.mark.spark
def test_a_table_is_staged_by_spark_and_only_its_dev_rows_reach_the_driver(spark, settings, tmp_path, monkeypatch):
    from jobs.tables import overwrite_table

    table = [(r["query"], r["title"], r["label"], r["split"]) for r in rows("train") + rows("dev")]
    table.append(("", "空查询", 1, "train"))
    overwrite_table(spark.createDataFrame(table, "query string, title string, label int, split string"),
                    settings.table("labeled_pairs"))
    collected, frame_type = [], type(spark.range(1))  # Spark 4: the classic DataFrame implementation
    to_pandas = frame_type.toPandas
    monkeypatch.setattr(frame_type, "toPandas", lambda df: collected.append(to_pandas(df)) or collected[-1])
    args = build_parser(finetune).parse_args(["--lake", settings.lake])
    data = training_data(args, settings, tmp_path / "input", lambda: spark)

    assert sum(len(f) for f in collected) == 16  # the dev split; the 16 training rows stayed on the executors
    assert data.train_rows == 16 and sorted(staged_labels(data)) == sorted(r["label"] for r in rows())
    assert len(data.shards) >= 2  # a small table is cut so that 2 ranks x workers each get rows
    assert data.rejects[["set", "reason"]].values.tolist() == [["train", "empty query"]]
    assert pq.read_table(tmp_path / "input" / "00" / "status=rejected").column("raw_label").to_pylist() == ["1"]


@pytest.mark.spark
def test_a_train_split_that_keeps_no_row_of_a_table_is_named_with_its_flag(spark, settings, tmp_path):
    from jobs.tables import overwrite_table

    overwrite_table(spark.createDataFrame([("q", "t", 1, "dev")], "query string, title string, label int, split string"),
                    settings.table("labeled_pairs"))
    args = build_parser(finetune).parse_args(["--lake", settings.lake, "--train-split", "valid"])
    with pytest.raises(InputDataError, match=r"no rows of split 'valid' \(--train-split valid\); its splits are \['dev'\]"):
        training_data(args, settings, tmp_path / "input", lambda: spark)


@pytest.mark.spark
def test_pairs_by_video_id_take_the_text_scoring_reads_of_the_latest_video(spark):
    from pyspark.testing import assertDataFrameEqual

    labeled = spark.createDataFrame([("耳机", "v1", 3), ("耳机", "v2", 1), ("耳机", "v9", 0)],
                                    "query string, video_id string, label int")
    videos = spark.createDataFrame(
        [("v1", "旧标题", [b"old"], "2024-08-01"), ("v1", "蓝牙耳机", [b"new"], "2024-09-01"), ("v2", "耳机盒", [], "2024-09-01")],
        "video_id string, title string, frames array<binary>, dt string",
    )
    texts = spark.createDataFrame([("v1", "2024-08-01", "旧标题 字幕"), ("v1", "2024-09-01", "蓝牙耳机 降噪")],
                                  "video_id string, dt string, video_text string")
    expected = spark.createDataFrame(
        [("v1", "耳机", 3, [b"new"], "蓝牙耳机 降噪"), ("v2", "耳机", 1, [], None), ("v9", "耳机", 0, None, None)],
        "video_id string, query string, label int, frames array<binary>, text string",
    )  # v2 has no text yet, v9 no video: both null, rejected downstream
    assertDataFrameEqual(with_video_text(labeled, videos, texts), expected)


def test_a_split_filter_that_keeps_no_row_is_named_with_its_flag():
    frame = pd.DataFrame({"query": ["q", "r"], "split": ["train", "dev"]})
    assert list(split_rows(frame, "dev", "labeled_pairs", "--dev-split")["query"]) == ["r"]
    with pytest.raises(InputDataError, match=r"labeled_pairs: no rows of split 'valid' \(--dev-split valid\); its "
                                             r"splits are \['dev', 'train'\]"):
        split_rows(frame, "valid", "labeled_pairs", "--dev-split")
    assert len(split_rows(frame.drop(columns="split"), "valid", "x", "--dev-split")) == 2  # no split column: all


@pytest.mark.spark
def test_with_a_live_spark_session_loader_workers_start_from_a_fork_server(spark):
    from hcmrm.train.finetune import FinetuneConfig
    from hcmrm.train.shards import StreamConfig
    from jobs.training import with_loader_start

    assert with_loader_start(FinetuneConfig()).stream.start_method == "forkserver"  # py4j's sockets stay the driver's
    assert with_loader_start(FinetuneConfig(stream=StreamConfig(workers=0))).stream.start_method == "fork"  # no worker, no fork
