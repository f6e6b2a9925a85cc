"""The score job checks its inputs and outputs against the table contracts before it scores anything."""

from __future__ import annotations

import contextlib
import dataclasses
import io

import pytest

from hcmrm.errors import InputDataError
from tests.jobs.test_score import DAY1, PAIRS, job_args, make_settings, register_tiny_model, write_lake

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    """Settings of a test lake with a champion; nothing scored yet."""
    root = tmp_path_factory.mktemp("score-contracts")
    settings = make_settings(root)
    write_lake(spark, settings)
    register_tiny_model(settings, root)
    return settings


def never_scores(*_):
    raise AssertionError("the scorer ran although the check should have stopped the job first")


def run_score(settings, date=DAY1, **flags) -> int:
    from jobs import score

    with contextlib.redirect_stdout(io.StringIO()):
        return score.run(job_args(settings, date=date, **flags))


def test_impressions_stored_as_string_fail_before_scoring_naming_table_column_and_types(spark, lake, tmp_path,
                                                                                       monkeypatch):
    from pathlib import Path

    from jobs import score
    from jobs.tables import overwrite_table

    rows = [(DAY1, q, a, str(i)) for q, a, i in PAIRS[DAY1]]
    bad = dataclasses.replace(lake, lake=str(tmp_path / "lake"))
    write_lake(spark, bad)
    overwrite_table(spark.createDataFrame(rows, "dt string, query string, ad_id string, impressions string"),
                    bad.table("query_ad_pairs"), "dt")
    monkeypatch.setattr(score, "tally", never_scores)
    with pytest.raises(InputDataError) as raised:
        run_score(bad)
    assert raised.value.exit_code == 3
    assert raised.value.line().startswith(f"table query_ad_pairs at {bad.table('query_ad_pairs')}: column impressions "
                                          "is string, expected bigint; check the input tables")
    assert not Path(bad.table("scoring_rejects")).exists() and not Path(bad.table("relevance_scores")).exists()


def test_an_output_table_of_other_types_fails_before_the_scoring_stage(spark, lake, tmp_path, monkeypatch):
    from jobs import score
    from jobs.tables import overwrite_table

    other = dataclasses.replace(lake, lake=str(tmp_path / "lake"))
    write_lake(spark, other)
    overwrite_table(spark.createDataFrame([(DAY1, "q", "a1", "many")], "dt string, query string, ad_id string, "
                                          "impressions string"), other.table("relevance_scores"), "dt")
    monkeypatch.setattr(score, "tally", never_scores)
    with pytest.raises(InputDataError, match=r"output table relevance_scores at .*: column impressions is string, "
                                             r"this job writes bigint"):
        run_score(other)


def test_check_contract_widens_narrow_numbers_and_names_a_missing_column(spark):
    from hcmrm.tables import QUERY_AD_PAIRS
    from jobs.tables import check_contract

    narrow = spark.createDataFrame([(DAY1, "q", "a1", 3, "shop")],
                                   "dt string, query string, ad_id string, impressions int, advertiser string")
    checked = check_contract(narrow, QUERY_AD_PAIRS, "here")
    assert checked.schema["impressions"].dataType.simpleString() == "bigint" and "advertiser" in checked.columns
    dated = check_contract(narrow.withColumn("dt", narrow.dt.cast("date")), QUERY_AD_PAIRS, "here")
    assert dated.schema["dt"].dataType.simpleString() == "string" and dated.first().dt == DAY1
    with pytest.raises(InputDataError, match=r"table query_ad_pairs at here lacks columns \['ad_id'\]"):
        check_contract(narrow.drop("ad_id"), QUERY_AD_PAIRS, "here")


def test_a_day_with_no_input_rows_exits_3_unless_no_require_input_records_it_empty(spark, lake, monkeypatch):
    from jobs import score
    from tests.jobs.test_score import read

    empty_day = "2024-09-12"
    monkeypatch.setattr(score, "tally", never_scores)
    with pytest.raises(InputDataError) as raised:
        run_score(lake, empty_day)
    assert raised.value.exit_code == 3 and raised.value.line() == (
        f"query_ad_pairs has no rows for dt {empty_day} at {lake.table('query_ad_pairs')}: the day's partition is "
        "empty or missing; rerun when upstream has written it, or pass --no-require-input to record an empty day")
    monkeypatch.undo()
    assert run_score(lake, empty_day, require_input=False) == 0
    runs = read(spark, lake, "scoring_runs", empty_day).toPandas()
    assert runs.input_pairs.tolist() == [0] and runs.input_version.tolist() == [0]  # write_lake's one commit


def test_a_second_score_of_a_date_stops_before_reading_while_the_first_runs(lake, monkeypatch):
    import os
    import socket

    from hcmrm.errors import ConcurrentWriteError
    from hcmrm.tracking.store import configure, use_experiment
    from jobs import score

    client = configure(lake).MlflowClient()
    first = client.create_run(use_experiment(lake, "hcmrm-scoring"), tags={  # a live score of DAY1, this process's
        "hcmrm.job": "score", "hcmrm.date": DAY1, "hcmrm.host": socket.gethostname(), "hcmrm.pid": str(os.getpid())})
    monkeypatch.setattr(score, "read_inputs", never_scores)
    try:
        with pytest.raises(ConcurrentWriteError) as raised:
            run_score(lake)
    finally:
        client.set_terminated(first.info.run_id, "FINISHED")
    assert raised.value.exit_code == 5
    assert raised.value.line().startswith(f"another score of {DAY1} is running: MLflow run {first.info.run_id} (host "
                                          f"{socket.gethostname()}, pid {os.getpid()}); this run stopped before reading")
    exp = client.get_experiment_by_name("hcmrm-scoring").experiment_id
    loser = client.search_runs([exp], f"tags.`hcmrm.date` = '{DAY1}'", order_by=["attributes.start_time DESC"])[0]
    assert loser.info.status == "FAILED" and "another score" in loser.data.tags["error"]


def test_input_columns_named_like_the_jobs_own_pass_unread(spark, lake, tmp_path):
    """Extra columns pass: `score`, `label` and `reason` in query_ad_pairs and ads do not clash with the
    columns the job makes; the day is scored as without them."""
    from jobs.tables import overwrite_table, read_table

    extra = dataclasses.replace(lake, lake=str(tmp_path / "lake"))
    write_lake(spark, extra)
    pairs = read_table(spark, extra.table("query_ad_pairs"))
    overwrite_table(pairs.selectExpr("*", "0.5 AS score", "3 AS label", "'x' AS reason"),
                    extra.table("query_ad_pairs"), "dt")
    ads = read_table(spark, extra.table("ads"))
    overwrite_table(ads.selectExpr("*", "1.0 AS score", "'y' AS reason", "'z' AS scoring_run_id"), extra.table("ads"))
    assert run_score(extra) == 0
    day = pairs.where(pairs.dt == DAY1)
    scores, rejects = (read_table(spark, extra.table(t)).where(f"dt = '{DAY1}'")
                       for t in ("relevance_scores", "scoring_rejects"))
    assert scores.count() + rejects.count() == day.count()
    assert {r.reason for r in rejects.collect()}.isdisjoint({"x", "y"})
    assert {r.scoring_run_id for r in scores.collect()} != {"z"}
