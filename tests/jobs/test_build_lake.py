"""build-lake on the shipped sample: the tables, their counts, a rerun that changes nothing, the summary."""

from __future__ import annotations

from collections import Counter

import pyarrow.parquet as pq
import pytest
from pyspark.testing import assertDataFrameEqual

from hcmrm.settings import Settings
from hcmrm.tables import ADS, LABELED_PAIRS, QUERY_AD_PAIRS, TABLES
from jobs import build_lake as job
from jobs.common import build_parser
from jobs.tables import spark_schema

pytestmark = pytest.mark.spark

SAMPLE = job.SAMPLE_DIR


def sample_videos() -> list[dict]:
    return pq.read_table(SAMPLE / "videos.parquet", columns=["video_id", "dt"]).to_pylist()


def sample_rows(name: str) -> int:
    if name == "labeled_pairs":
        return sum(1 for rel in ("train", "dev") for _ in open(SAMPLE / "labeled" / f"kuake_qtr_{rel}.jsonl"))
    return pq.read_metadata(SAMPLE / f"{name}.parquet").num_rows


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    """The sample built once into a temp lake, shared by the tests of this module."""
    root = tmp_path_factory.mktemp("build_lake")
    settings = Settings(lake=str(root / "lake"), tracking_uri=f"sqlite:///{root / 'mlruns.db'}", spark_profile="test")
    job.build_lake(spark, settings, SAMPLE)
    return settings


# --- transforms on small frames -----------------------------------------------------------------


def test_labeled_pairs_unions_the_splits(spark):
    train = spark.createDataFrame([("感冒吃什么", "感冒了吃什么药好", 3)], job.LABELED_JSON_SCHEMA)
    dev = spark.createDataFrame([("头疼", "头疼怎么办", 1), ("头疼", "牙疼", 0)], job.LABELED_JSON_SCHEMA)
    expected = spark.createDataFrame(
        [("感冒吃什么", "感冒了吃什么药好", 3, "train"), ("头疼", "头疼怎么办", 1, "dev"), ("头疼", "牙疼", 0, "dev")],
        spark_schema(LABELED_PAIRS),
    )
    assertDataFrameEqual(job.labeled_pairs(train, dev), expected)


def test_conform_orders_casts_and_drops_extra_columns(spark):
    raw = spark.createDataFrame(
        [("ad-0001", 12, "q", "2024-09-10", "extra")],
        "ad_id string, impressions int, query string, dt string, x string",
    )
    expected = spark.createDataFrame([("2024-09-10", "q", "ad-0001", 12)], spark_schema(QUERY_AD_PAIRS))
    assertDataFrameEqual(job.conform(raw, QUERY_AD_PAIRS), expected, checkRowOrder=True)
    assert job.conform(raw, QUERY_AD_PAIRS).schema == expected.schema

    with pytest.raises(ValueError, match=r"ads lacks columns \['video_id', 'advertiser', 'industry'\]"):
        job.conform(raw, ADS)


def test_a_missing_sample_file_is_a_clear_error(spark, tmp_path):
    (tmp_path / "videos.parquet").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="make_sample.py"):
        job.read_sample(spark, tmp_path)


# --- the shipped sample in a lake ---------------------------------------------------------------


def test_tables_match_the_sample_and_their_contracts(spark, lake):
    from delta.tables import DeltaTable

    for name in job.LAKE_TABLES:
        table = DeltaTable.forPath(spark, lake.table(name))
        df = table.toDF()
        assert df.schema == spark_schema(TABLES[name]), name
        assert df.count() == sample_rows(name), name
        expected_parts = [TABLES[name].partition] if TABLES[name].partition else []
        assert list(table.detail().first().partitionColumns) == expected_parts, name

    sql = spark.sql
    dates = sql(f"SELECT DISTINCT dt FROM delta.`{lake.table('query_ad_pairs')}` ORDER BY dt").collect()
    assert [r.dt for r in dates] == ["2024-09-10", "2024-09-11"]
    # Photos carry one JPEG frame each; QBQTC titles none; the bad rows are kept for the rejects paths.
    videos = sql(
        f"""SELECT count_if(video_id LIKE 'flickr-%' AND size(frames) = 1) AS photos,
                   count_if(video_id LIKE 'qbqtc-%' AND size(frames) = 0) AS text_only,
                   count_if(video_id LIKE 'bad-%') AS bad,
                   count_if(video_id LIKE 'flickr-%' AND substr(frames[0], 1, 2) = X'FFD8') AS jpeg
            FROM delta.`{lake.table('videos')}`"""
    ).first()
    ids = [v["video_id"] for v in sample_videos()]
    photos = sum(i.startswith("flickr-") for i in ids)
    assert photos > 0 and videos.text_only > 0
    assert (videos.photos, videos.text_only, videos.bad, videos.jpeg) == (
        photos, sum(i.startswith("qbqtc-") for i in ids), 4, photos)
    labels = sql(f"SELECT DISTINCT label FROM delta.`{lake.table('labeled_pairs')}` ORDER BY label").collect()
    assert [r.label for r in labels] == [0, 1, 2, 3]


def test_rerun_replaces_and_prints_the_summary(spark, lake, capsys):
    from delta.tables import DeltaTable

    def state():
        out = {}
        for name in job.LAKE_TABLES:
            table = DeltaTable.forPath(spark, lake.table(name))
            out[name] = (table.history(1).first().version, table.toDF().count())
        return out

    before = state()
    flags = ["--sample-dir", str(SAMPLE), "--lake", lake.lake, "--tracking-uri", lake.tracking_uri]
    args = build_parser(job).parse_args(flags + ["--spark-profile", "test"])
    assert job.run(args) == 0
    after = state()
    # One more version per table, the same rows: nothing duplicated.
    assert after == {name: (version + 1, rows) for name, (version, rows) in before.items()}
    keys = spark.sql(
        f"SELECT count(*) AS n, count(DISTINCT dt, query, ad_id) AS keys FROM delta.`{lake.table('query_ad_pairs')}`"
    ).first()
    assert keys.n == keys.keys + 1  # all distinct but the null-query bad row, which count(DISTINCT) skips

    out = capsys.readouterr().out
    assert f"lake: {lake.lake}" in out
    for name in job.LAKE_TABLES:
        assert f"\n{name}  (Delta version {after[name][0]}" in out
    by_dt = Counter(v["dt"] for v in sample_videos())
    (photo_dt, photos), (text_dt, texts) = sorted(by_dt.items())
    assert f"2 partitions by dt: {photo_dt} ({photos:,}), {text_dt} ({texts:,})" in out
    assert f"dt={photo_dt}: {photos:,} videos, {photos:,} with frames ({photos:,} frames), 0 text only, 0 without any text" in out
    assert "train: 3,000 pairs" in out and "dev: 500 pairs" in out


def test_summary_of_a_missing_table(spark, settings):
    lines = job.summarize_lake(spark, settings, ["videos"])
    assert lines == [f"lake: {settings.lake}", f"videos: no Delta table at {settings.table('videos')}"]
