"""Audits: draw a day's pairs for raters, import their labels (bad rows rejected with reasons), rate from them."""

from __future__ import annotations

import contextlib
import io
from argparse import Namespace

import pandas as pd
import pytest

from hcmrm.tables import AUDIT_LABELS, AUDIT_SAMPLE
from jobs.audit_sample import quotas
from tests.jobs.test_tables import assert_written_as_contract

DAY = "2024-09-10"
SCORES = "dt string, query string, ad_id string, industry string, label int, model_name string, model_version string"
SCORE_ROWS = [(DAY, f"q{i}", f"a{i % 4}", "games" if i % 4 < 3 else "pets", i % 4, "m", "1") for i in range(40)]


def test_quotas_split_n_in_proportion_largest_remainder_first():
    assert quotas({"a": 30, "b": 10}, 4) == {"a": 3, "b": 1}
    assert quotas({"a": 1, "b": 1, "c": 1}, 2) == {"a": 1, "b": 1, "c": 0}
    assert quotas({"a": 2}, 5) == {"a": 2}  # never more than there is


def common(settings) -> dict:
    return dict(lake=settings.lake, tracking_uri=settings.tracking_uri, artifact_root=settings.artifact_root,
                model_name=settings.model_name, spark_profile="test", conf=[])


@pytest.fixture
def lake(spark, settings):
    """A scored day of 40 pairs over 4 ads (two with frames) in a temp lake."""
    from jobs.tables import overwrite_table, replace_partitions

    replace_partitions(spark.createDataFrame(SCORE_ROWS, SCORES), settings.table("relevance_scores"), [DAY])
    ads = spark.createDataFrame([(f"a{i}", f"v{i}") for i in range(4)], "ad_id string, video_id string")
    overwrite_table(ads, settings.table("ads"))
    videos = spark.createDataFrame(
        [(f"v{i}", f"标题{i}", f"字幕{i}", None, [b"x"] * (i % 3), "2024-09-01") for i in range(4)],
        "video_id string, title string, ocr_text string, asr_text string, frames array<binary>, dt string")
    replace_partitions(videos, settings.table("videos"), ["2024-09-01"])
    return settings


def sample(settings, tmp_path, **flags) -> str:
    from jobs import audit_sample

    values = dict(date=DAY, n=None, fraction=None, by=None, seed=0, out=tmp_path / "audits")
    values.update(flags)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert audit_sample.run(Namespace(**common(settings), **values)) == 0
    return out.getvalue()


def import_labels(settings, path, rejects=None) -> str:
    from jobs import audit_import

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert audit_import.run(Namespace(**common(settings), file=path, rejects=rejects)) == 0
    return out.getvalue()


@pytest.mark.spark
def test_a_sample_is_seeded_stratified_and_carries_what_raters_need(spark, lake, tmp_path):
    printed = sample(lake, tmp_path, n=8, by="industry")
    assert f"audit sample {DAY}: 8 of the day's scored pairs (seed 0, stratified by industry)" in printed
    frame = pd.read_parquet(tmp_path / "audits" / f"audit_sample_{DAY}.parquet")
    assert list(frame.columns) == list(AUDIT_SAMPLE.columns)
    assert frame["industry"].value_counts().to_dict() == {"games": 6, "pets": 2}  # 30 and 10 of 40 pairs
    for row in frame.itertuples():  # ad a<i> shows video v<i>: its title, its text, i % 3 frames
        i = int(row.ad_id[1:])
        assert (row.title, row.text, row.video_id) == (f"标题{i}", f"字幕{i}", f"v{i}")
        assert row.frame_ids == ",".join(f"v{i}#{k}" for k in range(i % 3))
    assert frame.label.isna().all() and frame.rater.isna().all()
    csv = pd.read_csv(tmp_path / "audits" / f"audit_sample_{DAY}.csv")
    assert list(csv["query"]) == list(frame["query"])
    same = sample(lake, tmp_path / "again", n=8, by="industry")
    assert "8 of" in same
    again = pd.read_parquet(tmp_path / "again" / "audits" / f"audit_sample_{DAY}.parquet")
    assert list(again["query"]) == list(frame["query"])  # the same seed, the same pairs
    other = sample(lake, tmp_path / "seed1", fraction=0.2, seed=1)
    assert "8 of" in other
    assert set(pd.read_parquet(tmp_path / "seed1" / "audits" / f"audit_sample_{DAY}.parquet")["query"]) != set(
        frame["query"])


@pytest.mark.spark
def test_import_appends_good_labels_and_rejects_each_bad_row_with_its_reason(spark, lake, tmp_path):
    labels = pd.DataFrame(
        [(DAY, "q0", "a0", "2", "ann", ""), (DAY, "q1", "a1", "Bad", "ann", "2024-09-12 10:00:00"),
         (DAY, "q2", "a2", "7", "ann", ""), (DAY, "q3", "a3", "1", "", ""), (DAY, "q4", "a0", "1", "bo", "soon"),
         (DAY, "q5", "a9", "1", "bo", ""), ("", "q6", "a2", "1", "bo", ""),
         (DAY, "q8", "a0", "0", "bo", "2024-09-12"), (DAY, "q8", "a0", "3", "cy", "2024-09-13")],
        columns=["dt", "query", "ad_id", "label", "rater", "labeled_at"])
    path = tmp_path / "labels.csv"
    labels.to_csv(path, index=False)
    printed = import_labels(lake, path)
    assert "9 rows = 3 imported + 6 rejected" in printed
    table = spark.read.format("delta").load(lake.table("audit_labels"))
    assert_written_as_contract(spark, lake, AUDIT_LABELS)
    got = {(r.query, r.label, r.rater) for r in table.collect()}
    assert got == {("q0", 2, "ann"), ("q1", 0, "ann"), ("q8", 3, "cy")}  # q8: the latest of its two labels
    rejects = pd.read_csv(tmp_path / "labels.csv.rejected.csv", keep_default_na=False)
    reasons = dict(zip(rejects["query"], rejects["reason"].str.split(":").str[0]))
    assert reasons == {"q2": "bad_grade", "q3": "no_rater", "q4": "bad_labeled_at", "q5": "unknown_pair",
                       "q6": "missing_key", "q8": "duplicate_label"}

    again = import_labels(lake, path, rejects=tmp_path / "again.csv")  # the same file twice adds nothing
    assert "9 rows = 0 imported + 9 rejected" in again and "'already_labeled': 4" in again
    assert spark.read.format("delta").load(lake.table("audit_labels")).count() == 3


@pytest.mark.spark
def test_the_simulated_rater_labels_a_sample_from_the_truth_and_it_imports_whole(spark, lake, tmp_path):
    from jobs import simulate_rater

    sample(lake, tmp_path, n=10)
    drawn = tmp_path / "audits" / f"audit_sample_{DAY}.parquet"
    queries = list(pd.read_parquet(drawn)["query"])
    truth = pd.DataFrame({"dt": DAY, "query": queries[:-1], "ad_id": None, "label": 1})  # the last pair unknown
    truth["ad_id"] = pd.read_parquet(drawn)["ad_id"][:-1].to_numpy()
    truth.to_parquet(tmp_path / "truth.parquet")
    with contextlib.redirect_stdout(io.StringIO()):
        simulate_rater.run(Namespace(sample=drawn, truth=tmp_path / "truth.parquet", out=None))
    labeled = tmp_path / "audits" / f"audit_sample_{DAY}.labeled.csv"
    printed = import_labels(lake, labeled)
    assert "10 rows = 9 imported + 1 rejected {'bad_grade': 1}" in printed


def test_an_import_without_the_required_columns_is_a_clear_error(spark, settings, tmp_path):
    from hcmrm.errors import InputDataError
    from jobs.audit_import import read_labels

    path = tmp_path / "l.csv"
    pd.DataFrame({"dt": [DAY], "query": ["q"], "ad_id": ["a"]}).to_csv(path, index=False)
    with pytest.raises(InputDataError, match=r"lacks columns \['label', 'rater'\]"):
        read_labels(spark, path)
