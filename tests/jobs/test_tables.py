"""A Delta round trip through Spark: per-date replacement, reads with Spark SQL, the table history."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.spark

SCHEMA = "dt string, query string, ad_id string, impressions long"


def rows_of(spark, path):
    query = f"SELECT dt, query, ad_id, impressions FROM delta.`{path}` ORDER BY dt, query, ad_id"
    return [tuple(r) for r in spark.sql(query).collect()]


def test_replace_one_date_leaves_the_other_and_is_recorded(spark, settings):
    from delta.tables import DeltaTable

    from jobs.tables import replace_partitions

    path = settings.table("query_ad_pairs")
    first = [
        ("2024-09-10", "猫粮", "ad-0001", 10),
        ("2024-09-10", "狗粮", "ad-0002", 20),
        ("2024-09-11", "猫粮", "ad-0003", 30),
    ]
    replace_partitions(spark.createDataFrame(first, SCHEMA), path, ["2024-09-10", "2024-09-11"])
    assert rows_of(spark, path) == sorted(first)

    # Rerun 2024-09-11 with different rows: that date is replaced, 2024-09-10 is untouched.
    rerun = [("2024-09-11", "猫砂", "ad-0004", 40), ("2024-09-11", "猫粮", "ad-0003", 31)]
    replace_partitions(spark.createDataFrame(rerun, SCHEMA), path, ["2024-09-11"])
    assert rows_of(spark, path) == sorted(first[:2] + rerun)

    per_date = spark.sql(f"SELECT dt, count(*) AS n FROM delta.`{path}` GROUP BY dt ORDER BY dt").collect()
    assert [(r.dt, r.n) for r in per_date] == [("2024-09-10", 2), ("2024-09-11", 2)]

    history = DeltaTable.forPath(spark, path).history().orderBy("version").collect()
    assert [(h.version, h.operation) for h in history] == [(0, "WRITE"), (1, "WRITE")]
    assert history[0].operationParameters["predicate"] == "dt IN ('2024-09-10', '2024-09-11')"
    assert history[1].operationParameters["predicate"] == "dt IN ('2024-09-11')"
    assert history[1].operationParameters["mode"] == "Overwrite"
    # DESCRIBE HISTORY (what an analyst types) tells the same story, newest first.
    described = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").select("version").collect()
    assert [r.version for r in described] == [1, 0]

    # Time travel still sees the first 2024-09-11.
    old = spark.read.format("delta").option("versionAsOf", 0).load(path).where("dt = '2024-09-11'")
    assert [r.ad_id for r in old.collect()] == ["ad-0003"]


def test_a_row_outside_the_replaced_dates_fails_and_changes_nothing(spark, settings):
    from delta.tables import DeltaTable
    from pyspark.errors import AnalysisException

    from jobs.tables import replace_partitions

    path = settings.table("pairs")
    before = [("2024-09-10", "猫粮", "ad-0001", 10), ("2024-09-11", "狗粮", "ad-0002", 20)]
    replace_partitions(spark.createDataFrame(before, SCHEMA), path, ["2024-09-10", "2024-09-11"])

    stray = [("2024-09-11", "猫砂", "ad-0003", 5), ("2024-09-10", "猫砂", "ad-0003", 5)]
    with pytest.raises(AnalysisException, match="DELTA_REPLACE_WHERE_MISMATCH"):
        replace_partitions(spark.createDataFrame(stray, SCHEMA), path, ["2024-09-11"])

    assert rows_of(spark, path) == sorted(before)
    assert DeltaTable.forPath(spark, path).history().count() == 1  # no commit for the failed write


def test_replace_needs_dates_and_adds_new_columns(spark, settings):
    from jobs.tables import replace_partitions

    path = settings.table("scores")
    df = spark.createDataFrame([("2024-09-10", "q", "ad-0001", 1)], SCHEMA)
    with pytest.raises(ValueError, match="no dt given"):
        replace_partitions(df, path, [])

    replace_partitions(df, path, ["2024-09-10"])
    wider = spark.createDataFrame([("2024-09-11", "q", "ad-0001", 2, 0.5)], SCHEMA + ", score double")
    replace_partitions(wider, path, ["2024-09-11"])  # schema evolution: `score` joins the table
    got = spark.sql(f"SELECT dt, score FROM delta.`{path}` ORDER BY dt").collect()
    assert [(r.dt, r.score) for r in got] == [("2024-09-10", None), ("2024-09-11", 0.5)]


def test_overwrite_table_and_read_table(spark, settings, tmp_path):
    from jobs.tables import is_delta_table, overwrite_table, read_table

    path = settings.table("ads")
    overwrite_table(spark.createDataFrame([("ad-0001", "v1")], "ad_id string, video_id string"), path)
    overwrite_table(spark.createDataFrame([("ad-0002", 7)], "ad_id string, n int"), path)  # new schema, whole
    assert is_delta_table(spark, path)
    assert [tuple(r) for r in read_table(spark, path).collect()] == [("ad-0002", 7)]

    # An input folder of plain Parquet (not Delta) reads too.
    parquet = str(tmp_path / "plain")
    spark.createDataFrame([("v1",)], "video_id string").write.parquet(parquet)
    assert not is_delta_table(spark, parquet)
    assert [r.video_id for r in read_table(spark, parquet).collect()] == ["v1"]
