"""The score job's empty-query check in Spark agrees with hcmrm.text.normalize, the check every other path uses."""

import pytest

from hcmrm.text.normalize import SPARK_BLANK_PATTERN, is_blank

pytestmark = pytest.mark.spark

TEXTS = ["", " ", "\u200b\u200b\u200b", "\ufeff", "\u200c\u200d\u2060", "\u200e\u202e", "\x00\x07\x1b\x7f",
         "\u00ad\t\u3000\n", "\u00a0", "\u2028", "手机", "\u200b手机\u200b", "。", "ｉｐｈｏｎｅ", "a\u200bb", "\u3164"]


def test_the_spark_pattern_blanks_exactly_what_normalize_text_blanks(spark):
    from pyspark.sql import functions as F

    df = spark.createDataFrame([(t,) for t in TEXTS], "text string")
    spark_blank = [r.blank for r in df.select((F.regexp_replace("text", SPARK_BLANK_PATTERN, "") == "").alias("blank"))
                   .collect()]
    assert spark_blank == [is_blank(t) for t in TEXTS]
    assert sum(spark_blank) == 10  # the invisible ones; the visible six are kept


def test_a_query_of_only_zero_width_spaces_is_rejected_as_empty_query(spark):
    from jobs.scoring_plan import validate_pairs

    pairs = spark.createDataFrame([("2024-09-10", "\u200b\u200b", "a1", 1), ("2024-09-10", "\ufeff\x07", "a1", 1),
                                   ("2024-09-10", "手机\u200b", "a1", 1)],
                                  "dt string, query string, ad_id string, impressions long")
    ads = spark.createDataFrame([("a1", "v1")], "ad_id string, video_id string")
    videos = spark.createDataFrame([("v1", "2024-09-01")], "video_id string, dt string")
    texts = spark.createDataFrame([("v1", "2024-09-01", "手机")], "video_id string, dt string, video_text string")
    reasons = {r.query: r.reason for r in validate_pairs(pairs, ads, videos, texts).collect()}
    assert reasons == {"\u200b\u200b": "empty_query", "\ufeff\x07": "empty_query", "手机\u200b": None}
