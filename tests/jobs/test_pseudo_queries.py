"""The pseudo-queries job: its transforms on small frames, then the whole job on a temp lake."""

import hashlib
import io
import json
import math
from datetime import datetime, timezone

import pytest
from PIL import Image
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from hcmrm.config import load
from hcmrm.tables import DUPLICATE_VIDEO_ID, KEYWORD_IDF, MISSING_VIDEO_ID, PRETRAIN_PAIRS, PRETRAIN_REJECTS
from hcmrm.tables import VIDEO_TEXTS as VIDEO_TEXTS_TABLE
from hcmrm.tables import VIDEOS as VIDEOS_TABLE
from hcmrm.text.keywords import Idf, document_terms
from hcmrm.text.pseudo_query import NO_KEYWORDS, NO_TEXT, pretrain_text
from hcmrm.text.video_text import TextSettings, build_video_text, describe, fingerprint
from jobs import pseudo_queries as job
from jobs.cli import make_parser
from jobs.tables import spark_schema
from tests.jobs.test_tables import assert_written_as_contract

VIDEOS_SCHEMA = spark_schema(VIDEOS_TABLE)


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (0, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


FRAME = png()
DAY1, DAY2 = "2024-08-18", "2024-08-19"
VIDEOS = [
    ("v1", "《原神》纳塔交响音乐现场", "伦敦交响乐团", None, [FRAME], DAY1),
    ("v2", "原神新角色PV 米哈游", None, "大家好", [], DAY1),
    ("v2", "原神新角色PV 米哈游 重复", None, None, [], DAY1),  # same key: a duplicate
    ("v3", None, None, None, [FRAME], DAY1),  # no text
    (None, "没有编号的视频标题", None, None, [], DAY1),  # no id
    ("v4", "北京大学开学典礼", None, None, [FRAME, b"\x89PNG broken"], DAY2),  # bad frame
    ("v5", "我们今天点赞视频", None, None, [], DAY2),  # no keywords
    ("v6", "叙利亚战机起飞 以色列", "新闻联播", None, None, DAY2),
]


@pytest.fixture
def videos(spark):
    return spark.createDataFrame(VIDEOS, VIDEOS_SCHEMA)


# --- transforms ---------------------------------------------------------------------------------


def test_cli_has_the_command_and_the_yaml_matches_the_dataclass_defaults():
    args = make_parser().parse_args(["pseudo-queries", "--date", DAY1, "--seed", "3", "--top-k", "4"])
    assert args.handler is job.run and args.date == [DAY1]
    loaded = load(job.JobConfig, job.CONF_FILE)
    assert loaded == job.JobConfig()  # conf/jobs/pseudo_queries.yaml documents the defaults
    flagged = load(job.JobConfig, job.CONF_FILE, {"seed": 3, "keywords.top_k": 4, "keywords.idf_source": "jieba",
                                                  "keywords.min_df": None})
    assert flagged.seed == 3 and flagged.keywords.top_k == 4 and flagged.keywords.idf_source == "jieba"
    assert flagged.keywords.min_df == loaded.keywords.min_df  # an unset flag keeps the file's value


@pytest.mark.spark
def test_corpus_idf_is_the_document_frequency_of_jieba_terms(spark):
    texts = ["原神 游戏 原神", "游戏 评测", "北京大学", "!!!"]  # the last has no usable text
    df = spark.createDataFrame([(f"v{i}", t, None, None, [], DAY1) for i, t in enumerate(texts)], VIDEOS_SCHEMA)
    counts = {}
    for text in texts[:3]:
        for term in document_terms(text):
            counts[term] = counts.get(term, 0) + 1
    expected = [(t, d, 3, math.log(4 / (1 + d)) + 1) for t, d in counts.items()]
    cached = job.term_counts(df).persist()  # as the job does: tokenized once for every check below
    got = job.idf_table(cached)
    assertDataFrameEqual(got, spark.createDataFrame(expected, "term string, df long, n_docs long, idf double"))
    idf = job.idf_from_table(got)
    assert idf.weights == pytest.approx(Idf.from_counts(counts, 3).weights)
    assert [(r.term, r.df, r.n_docs) for r in job.idf_table(cached, min_df=2).collect()] == [("游戏", 2, 3)]
    cached.unpersist()


@pytest.mark.spark
def test_flag_keys_rejects_missing_ids_and_keeps_one_row_per_key(spark, videos):
    got = job.flag_keys(videos).select("video_id", "dt", "title", "key_problem")
    expected = [(v, d, t, None) for v, t, _, _, _, d in VIDEOS]
    expected[2] = ("v2", DAY1, VIDEOS[2][1], DUPLICATE_VIDEO_ID)  # the first by title is kept
    expected[4] = (None, DAY1, VIDEOS[4][1], MISSING_VIDEO_ID)
    assertDataFrameEqual(got, spark.createDataFrame(expected, "video_id string, dt string, title string, key_problem string"))


@pytest.mark.spark
def test_pretrain_results_split_into_pairs_and_rejects(spark, videos):
    results = job.pretrain_results(videos, None, seed=1).persist()
    at = datetime(2024, 8, 20, 1, 2, 3, tzinfo=timezone.utc)
    rejects = job.rejects_of(results, at)
    assertDataFrameEqual(
        rejects,
        spark.createDataFrame(
            [
                ("v2", DAY1, DUPLICATE_VIDEO_ID, at, None),
                ("v3", DAY1, NO_TEXT, at, None),
                (None, DAY1, MISSING_VIDEO_ID, at, None),
                ("v4", DAY2, "bad_frames: frame 1: cannot identify image", at, None),
                ("v5", DAY2, NO_KEYWORDS, at, None),
            ],
            "video_id string, dt string, reason string, rejected_at timestamp, pseudo_query_run_id string",
        ),
    )
    expected = []
    for video_id, title, ocr, asr, frames, dt in (VIDEOS[0], VIDEOS[1], VIDEOS[7]):
        p = pretrain_text(video_id, title, ocr, asr, None, seed=1)
        expected.append((video_id, dt, p.pseudo_query, p.keywords, p.context_text, p.video_text, frames, len(frames or []),
                         "run-1"))
    schema = "video_id string, dt string, pseudo_query string, keywords array<string>, context_text string, " \
             "video_text string, frames array<binary>, n_frames int, pseudo_query_run_id string"
    assertDataFrameEqual(job.pairs_of(results, "run-1"), spark.createDataFrame(expected, schema))

    # Every video with a usable key has its text, rejected for pre-training or not (v3: no text at all), and
    # the record of its frames: their count, every problem (v4's frame 1) and the limits they were checked in.
    recipe = describe(TextSettings(), None)
    problems = {"v4": [(1, False, "cannot identify image")]}
    texts = [(v, d, build_video_text(t, o, a), json.dumps(recipe, sort_keys=True, ensure_ascii=False),
              fingerprint(recipe), None, content_digest(build_video_text(t, o, a), f), None, len(f or []),
              problems.get(v, []), '{"max_bytes": 16777216, "max_pixels": 40000000}')
             for v, t, o, a, f, d in VIDEOS if v is not None and t != VIDEOS[2][1]]
    assertDataFrameEqual(job.video_texts_of(results, recipe), spark.createDataFrame(texts, spark_schema(VIDEO_TEXTS_TABLE)))
    results.unpersist()


def content_digest(text: str, frames) -> str:
    """udfs.score.content_fingerprint as written in its docstring: the key scoring's carry-over reads."""
    def sha(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    parts = ",".join("null" if f is None else sha(f) for f in frames or [])
    return sha(f"{sha(text.encode())}|{parts}".encode())


def test_labeled_rows_get_their_text_as_video_texts_are_built(tmp_path):
    import pandas as pd

    conf = tmp_path / "pq.yaml"
    conf.write_text("max_sequence_chars: 10\nkeywords: {idf_source: jieba}\n")
    title_only = pd.DataFrame({"query": ["q"], "title": ["《原神》纳塔交响音乐现场"], "label": [1]})

    def no_spark():
        raise AssertionError("a title alone needs no IDF, so no Spark")

    got = job.labeled_texts(title_only, None, no_spark, conf)
    assert got["text"].tolist() == ["《原神》纳塔交响音乐"]  # the settings file's bound reached the text
    with_ocr = title_only.assign(ocr_text=["伦敦交响乐团演奏 米哈游出品"], title=["原神"])
    expected = build_video_text("原神", "伦敦交响乐团演奏 米哈游出品", None, None, load(job.JobConfig, conf).text_settings())
    assert job.labeled_texts(with_ocr, None, no_spark, conf)["text"].tolist() == [expected]  # jieba's IDF: no lake


@pytest.mark.spark
def test_select_dates_filters_and_refuses_bad_dates(spark, videos):
    day1, dates = job.select_dates(videos, [DAY1])
    assert dates == [DAY1] and day1.count() == 5
    assert job.select_dates(videos, None)[1] == [DAY1, DAY2]
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        job.select_dates(videos, ["18/08/2024"])
    with pytest.raises(ValueError, match="null or not"):
        job.select_dates(videos.union(spark.createDataFrame([("v9", "标题", None, None, [], None)], VIDEOS_SCHEMA)), None)


# --- the job ------------------------------------------------------------------------------------


@pytest.mark.spark
@pytest.mark.slow  # two whole job runs with Delta writes: ~50 s on the loaded shared machine
def test_the_job_writes_reconciled_tables_and_a_rerun_replaces_its_date(spark, settings, tmp_path):
    source = str(tmp_path / "videos_parquet")
    spark.createDataFrame(VIDEOS, VIDEOS_SCHEMA).write.parquet(source)

    counts = job.build(spark, settings, source, None, job.JobConfig())
    assert (counts.input, counts.pairs, counts.rejects, counts.texts) == (8, 3, 5, 6) and counts.reconciles()
    assert counts.reasons[NO_TEXT] == 1 and "reconciled" in counts.summary()
    for table in (KEYWORD_IDF, PRETRAIN_PAIRS, PRETRAIN_REJECTS, VIDEO_TEXTS_TABLE):
        assert_written_as_contract(spark, settings, table)
    texts = spark.read.format("delta").load(settings.table(VIDEO_TEXTS_TABLE.name))
    assert sorted(r.video_id for r in texts.collect()) == ["v1", "v2", "v3", "v4", "v5", "v6"]
    recipe = json.loads(texts.first().text_settings)
    assert recipe["idf"]["source"] == "corpus" and recipe["max_chars"] == job.JobConfig().max_sequence_chars

    pairs = spark.read.format("delta").load(settings.table("pretrain_pairs"))
    assert sorted(r.video_id for r in pairs.collect()) == ["v1", "v2", "v6"]
    assert pairs.where("video_id = 'v1'").first().n_frames == 1
    idf = spark.read.format("delta").load(settings.table("keyword_idf"))
    assert idf.where("term = '原神'").first().df == 2  # v1 and v2, not v2's duplicate
    assert idf.first().n_docs == 5  # rows with a usable key and text

    # Rerun DAY2 with another seed, reusing the stored IDF: DAY2 replaced, DAY1 untouched, no duplicates.
    before = {r.video_id: r.pseudo_query for r in pairs.where(F.col("dt") == DAY1).collect()}
    config = load(job.JobConfig, job.CONF_FILE, {"seed": 11, "keywords.idf_source": "stored"})
    counts2 = job.build(spark, settings, source, [DAY2], config)
    assert (counts2.input, counts2.pairs, counts2.rejects) == (3, 1, 2)
    pairs = spark.read.format("delta").load(settings.table("pretrain_pairs"))
    assert pairs.count() == 3
    assert {r.video_id: r.pseudo_query for r in pairs.where(F.col("dt") == DAY1).collect()} == before
    rejects = spark.read.format("delta").load(settings.table("pretrain_rejects"))
    assert rejects.count() == 5 and rejects.where(F.col("dt") == DAY2).count() == 2
    texts = spark.read.format("delta").load(settings.table(VIDEO_TEXTS_TABLE.name))
    assert texts.count() == 6 and texts.select("text_fingerprint").distinct().count() == 1  # the stored IDF: same recipe

    with pytest.raises(ValueError, match="no videos"):
        job.build(spark, settings, source, ["2030-01-01"], job.JobConfig())


def seen_by_readers(spark, settings, day=DAY1) -> dict:
    """{table: {video_id: run}} as readers (jobs.tables.read_table) see `day`."""
    from jobs.tables import read_table

    return {name: {r.video_id: r.pseudo_query_run_id for r in read_table(spark, settings.table(name))
                   .where(F.col("dt") == day).collect()}
            for name in ("pretrain_pairs", "pretrain_rejects", "video_texts")}


@pytest.mark.spark
@pytest.mark.slow  # three job runs: ~1 min on the loaded shared machine
def test_a_run_killed_before_its_commit_leaves_the_last_committed_run_and_a_rerun_heals(
        spark, settings, tmp_path, monkeypatch):
    source = str(tmp_path / "videos_parquet")
    day1 = [v for v in VIDEOS if v[-1] == DAY1]
    spark.createDataFrame(day1, VIDEOS_SCHEMA).write.parquet(source)
    job.build(spark, settings, source, [DAY1], job.JobConfig())

    def seen():
        return seen_by_readers(spark, settings)

    first = seen()
    assert "v3" in first["pretrain_rejects"] and len({*first["pretrain_pairs"].values(),
                                                      *first["pretrain_rejects"].values()}) == 1

    # v3 gets a title (it becomes a pair); the run dies after writing pairs and texts, before its commit.
    changed = [(v, "原神新角色 演示视频" if v == "v3" else t, o, a, f, d) for v, t, o, a, f, d in day1]
    spark.createDataFrame(changed, VIDEOS_SCHEMA).write.mode("overwrite").parquet(source)
    real_append = job.append_run

    def killed_at_the_rejects(df, path, *rest):
        if path.endswith("pretrain_rejects"):
            raise RuntimeError("driver killed before the commit")
        return real_append(df, path, *rest)

    monkeypatch.setattr(job, "append_run", killed_at_the_rejects)
    with pytest.raises(RuntimeError, match="killed"):
        job.build(spark, settings, source, [DAY1], job.JobConfig())
    monkeypatch.undo()
    assert spark.read.format("delta").load(settings.table("pretrain_pairs")).where("video_id = 'v3'").count() == 1
    assert seen() == first  # the killed run's pairs are in the table, but no reader sees them: v3 is not in both

    job.build(spark, settings, source, [DAY1], job.JobConfig())
    healed = seen()
    runs = {*healed["pretrain_pairs"].values(), *healed["pretrain_rejects"].values(), *healed["video_texts"].values()}
    assert "v3" in healed["pretrain_pairs"] and "v3" not in healed["pretrain_rejects"] and len(runs) == 1
    for name in ("pretrain_pairs", "pretrain_rejects", "video_texts"):  # the other runs' rows are gone
        raw = spark.read.format("delta").load(settings.table(name)).where(F.col("dt") == DAY1)
        assert {r.pseudo_query_run_id for r in raw.collect()} == runs


@pytest.mark.spark
def test_a_second_build_of_a_date_exits_5_before_any_work_while_the_first_runs(spark, settings, tmp_path,
                                                                               monkeypatch, capsys):
    from hcmrm.tracking.store import configure
    from jobs.common import run_command

    source = str(tmp_path / "videos_parquet")
    spark.createDataFrame(VIDEOS, VIDEOS_SCHEMA).write.parquet(source)

    def no_work(*_):
        raise AssertionError("the second build started working although the first holds its date")

    monkeypatch.setattr(job, "resolve_idf", no_work)
    monkeypatch.setattr(job, "spread", no_work)
    argv = ["pseudo-queries", "--date", DAY2, "--date", DAY1, "--input", source, "--lake", settings.lake,
            "--tracking-uri", settings.tracking_uri, "--artifact-root", settings.artifact_root, "--spark-profile", "test"]
    with job.tracked_build(settings, job.JobConfig()) as claim:
        claim([DAY1])  # the first build, of DAY1: running
        first = configure(settings).MlflowClient().search_runs(
            [configure(settings).get_experiment_by_name("hcmrm-pseudo-queries").experiment_id])[0].info.run_id
        code = run_command(make_parser().parse_args(argv), "pseudo-queries")
    assert code == 5
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"hcmrm pseudo-queries: another pseudo-queries of {DAY1} is running: MLflow run {first} "
                           f"(host "), line
    assert "; this run stopped before building anything; rerun when it has finished" in line
    client = configure(settings).MlflowClient()
    builds = {r.data.tags["hcmrm.date"]: r for r in client.search_runs(
        [client.get_experiment_by_name("hcmrm-pseudo-queries").experiment_id])}
    assert builds[DAY1].info.status == "FINISHED"  # the first, closed with its block
    assert builds[f"{DAY1},{DAY2}"].info.status == "FAILED" and "another pseudo-queries" in builds[f"{DAY1},{DAY2}"].data.tags["error"]
    assert not any((tmp_path / "lake" / name).exists() for name in ("pretrain_pairs", "keyword_idf"))


@pytest.mark.spark
@pytest.mark.slow  # an in-process build, one `hcmrm pseudo-queries` process, a rerun: ~1.5 min
def test_the_driver_jvm_killed_at_its_first_commit_leaves_the_committed_run_and_a_rerun_heals(spark, settings,
                                                                                              tmp_path):
    import subprocess
    import sys

    from tests.jobs.test_clean_failures import environment
    from tests.jobs.test_score_commit import kill_jvm_at_commit

    source = str(tmp_path / "videos_parquet")
    day1 = [v for v in VIDEOS if v[-1] == DAY1]
    spark.createDataFrame(day1, VIDEOS_SCHEMA).write.parquet(source)
    job.build(spark, settings, source, [DAY1], job.JobConfig())
    first = seen_by_readers(spark, settings)
    run_a = {*first["pretrain_pairs"].values()}
    changed = [(v, "原神新角色 演示视频" if v == "v3" else t, o, a, f, d) for v, t, o, a, f, d in day1]  # v3: a pair now
    spark.createDataFrame(changed, VIDEOS_SCHEMA).write.mode("overwrite").parquet(source)

    argv = ["--date", DAY1, "--input", source, "--lake", settings.lake, "--tracking-uri", settings.tracking_uri,
            "--artifact-root", settings.artifact_root, "--spark-profile", "test"]
    process = subprocess.Popen([sys.executable, "-m", "jobs.cli", "pseudo-queries", *argv], env=environment(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        kill_jvm_at_commit(process, [settings.table(t) for t in ("pretrain_pairs", "pretrain_rejects", "video_texts")])
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 1, err[-3000:]
    assert sum(line.startswith("hcmrm pseudo-queries: ") for line in err.splitlines()) == 1, err[-3000:]
    log = spark.read.format("delta").load(settings.table("pseudo_query_runs")).where(F.col("dt") == DAY1).collect()
    assert {r.pseudo_query_run_id for r in log} == run_a  # killed before its commit
    assert seen_by_readers(spark, settings) == first  # v3 only rejected, one run across the three tables

    job.build(spark, settings, source, [DAY1], job.JobConfig())
    healed = seen_by_readers(spark, settings)
    runs = {*healed["pretrain_pairs"].values(), *healed["pretrain_rejects"].values(), *healed["video_texts"].values()}
    assert "v3" in healed["pretrain_pairs"] and "v3" not in healed["pretrain_rejects"] and len(runs) == 1
    assert runs != run_a
