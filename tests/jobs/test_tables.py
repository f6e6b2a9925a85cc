"""The contracts in Spark (schemas, conform, reasons), and a Delta round trip: per-date replacement, reads
with Spark SQL, the table history."""

from __future__ import annotations

import pytest

from hcmrm.tables import DUPLICATE_AD, QUERY_AD_PAIRS, TABLES, UNKNOWN_AD, VIDEOS

pytestmark = pytest.mark.spark

SCHEMA = "dt string, query string, ad_id string, impressions long"


def layout(schema) -> list[str]:
    """'name type' per column, in order: what a contract pins (every column is nullable)."""
    return [f"{f.name} {f.dataType.simpleString()}" for f in schema.fields]


def assert_written_as_contract(spark, settings, table) -> None:
    """The Delta table a job wrote has its contract's columns, types, order and partition column."""
    from delta.tables import DeltaTable

    from jobs.tables import spark_schema

    written = DeltaTable.forPath(spark, settings.table(table.name))
    assert layout(written.toDF().schema) == layout(spark_schema(table)), table.name
    assert list(written.detail().first().partitionColumns) == ([table.partition] if table.partition else [])


# The layouts as the jobs wrote them before the contracts had one home: lakes written then must stay valid.
LAYOUTS_BEFORE = {
    "videos": "video_id string, title string, ocr_text string, asr_text string, frames array<binary>, dt string",
    "ads": "ad_id string, video_id string, advertiser string, industry string",
    "query_ad_pairs": "dt string, query string, ad_id string, impressions long",
    "labeled_pairs": "query string, title string, label int, split string",
    "keyword_idf": "term string, df long, n_docs long, idf double",
    "pretrain_pairs": "video_id string, dt string, pseudo_query string, keywords array<string>, context_text string, "
                      "video_text string, frames array<binary>, n_frames int",
    "pretrain_rejects": "video_id string, dt string, reason string, rejected_at timestamp",
    "video_texts": "video_id string, dt string, video_text string, text_settings string, text_fingerprint string",
    "relevance_scores": "dt string, query string, ad_id string, impressions long, advertiser string, industry string, "
                        "p_bad double, p_less double, p_good double, p_excellent double, score double, label int, "
                        "model_name string, model_version string, run_id string, scoring_run_id string, "
                        "scored_at timestamp",
    "scoring_rejects": "dt string, query string, ad_id string, reason string, model_version string, "
                       "scoring_run_id string, rejected_at timestamp",
    "scoring_runs": "dt string, model_name string, model_version string, model_run_id string, scoring_run_id string, "
                    "input_pairs long, scored_pairs long, rejected_pairs long, distinct_ads long, vision_encodes long, "
                    "irrelevant_rate double, seconds double, finished_at timestamp",
    "irrelevant_rate_daily": "dt string, model_name string, model_version string, advertiser string, industry string, "
                             "pairs long, irrelevant_pairs long, impressions long, irrelevant_impressions long, "
                             "rate double, impression_weighted_rate double, expected_irrelevant_pairs double, "
                             "expected_rate double",  # the expected rate: added at the end, older tables lack it
}


# Columns (at the end only) and tables added since: lakes written before stay readable by schema evolution.
ADDED = {
    "pretrain_pairs": "pseudo_query_run_id string", "pretrain_rejects": "pseudo_query_run_id string",
    "video_texts": "pseudo_query_run_id string, content_fingerprint string, videos_version bigint, n_frames int, "
                   "frame_problems array<struct<index: int, oversized: boolean, problem: string>>, "
                   "frame_limits string",
    "scoring_runs": "input_version bigint, carried_pairs bigint",
    "relevance_scores": "ad_fingerprint string",
    "pseudo_query_runs": "dt string, pseudo_query_run_id string, finished_at timestamp",
    "irrelevant_rate_daily": "audited_pairs bigint, audited_irrelevant_pairs bigint, audited_model_irrelevant_pairs "
                             "bigint, audit_disagreements bigint, audited_rate double, audited_rate_low double, "
                             "audited_rate_high double, ppi_rate double, ppi_rate_low double, ppi_rate_high double",
    "audit_sample": "dt string, query string, ad_id string, title string, text string, video_id string, "
                    "frame_ids string, advertiser string, industry string, label string, rater string",
    "audit_labels": "dt string, query string, ad_id string, label int, rater string, labeled_at timestamp, "
                    "import_id string",
    "audit_rejects": "dt string, query string, ad_id string, label string, rater string, labeled_at string, "
                     "reason string",
}
LAYOUTS = {name: ", ".join(part for part in (LAYOUTS_BEFORE.get(name), ADDED.get(name)) if part)
           for name in {*LAYOUTS_BEFORE, *ADDED}}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_each_contract_is_the_spark_schema_written_before(spark, name):
    from pyspark.sql.types import StructType

    from jobs.tables import spark_schema

    assert spark_schema(TABLES[name]) == StructType.fromDDL(LAYOUTS[name])  # timestamps stay `timestamp`


def test_every_table_has_a_pinned_layout():
    assert sorted(TABLES) == sorted(LAYOUTS)


def test_conform_orders_and_casts_to_the_contract_and_names_what_is_missing(spark):
    from jobs.tables import conform, spark_schema

    raw = spark.createDataFrame([(7, "q", "2024-09-10", "a1", "extra")],
                                "impressions int, query string, dt string, ad_id string, x string")
    got = conform(raw, QUERY_AD_PAIRS)
    assert got.schema == spark_schema(QUERY_AD_PAIRS)  # int widened to long, `x` dropped
    assert [tuple(r) for r in got.collect()] == [("2024-09-10", "q", "a1", 7)]
    with pytest.raises(ValueError, match=r"videos lacks columns \['title', 'ocr_text', 'asr_text', 'frames'\]"):
        conform(raw.withColumnRenamed("ad_id", "video_id"), VIDEOS)


def test_reasons_are_written_as_their_text_and_counted_by_their_code(spark):
    from pyspark.sql import functions as F

    from jobs.tables import reason_code

    df = spark.createDataFrame([(2,)], "n int").select(
        F.lit(UNKNOWN_AD).alias("unknown"), F.format_string(DUPLICATE_AD, "n").alias("duplicate"),
        F.lit(None).cast("string").alias("scored"),
    )
    row = df.select("*", *[reason_code(c).alias(f"{c}_code") for c in df.columns]).first()
    assert (row.unknown, row.duplicate) == ("unknown_ad: ad_id not in ads", "duplicate_ad: ad_id appears 2 times in ads")
    assert (row.unknown_code, row.duplicate_code, row.scored_code) == ("unknown_ad", "duplicate_ad", None)


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
