"""What changed in a day's input since a run read it, read from the Delta log (jobs.input_changes)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.spark

SCHEMA = "dt string, query string, ad_id string, impressions long"


def day_table(spark, path, rows):
    """query_ad_pairs-like rows at `path`, partitioned by dt, with deletion vectors on; its version."""
    from jobs.tables import overwrite_table, table_version

    overwrite_table(spark.createDataFrame(rows, SCHEMA), path, "dt")
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')")
    return table_version(spark, path)


def files_of_day(spark, path, date):
    df = spark.read.format("delta").load(path).where(f"dt = '{date}'")
    return {r[0] for r in df.select("_metadata.file_path").distinct().collect()}


def test_a_deletion_vector_delete_after_a_restore_keeps_count_and_files_but_is_seen(spark, tmp_path):
    """The same files and the same row count hold other rows: only the log tells."""
    from delta.tables import DeltaTable

    from jobs.input_changes import changes_since
    from jobs.tables import table_version

    path = str(tmp_path / "pairs")
    rows = [("d1", f"q{i}", "a", 1) for i in range(6)] + [("d2", "q", "a", 1)]
    base = day_table(spark, path, rows)
    table = DeltaTable.forPath(spark, path)
    table.delete("dt = 'd1' AND query = 'q0'")
    read = table_version(spark, path)  # a run read d1 here: q1..q5
    count, files = spark.read.format("delta").load(path).where("dt = 'd1'").count(), files_of_day(spark, path, "d1")
    table.restoreToVersion(base)
    table.delete("dt = 'd1' AND query = 'q5'")  # now q0..q4: the same count, the same data file
    now = table_version(spark, path)
    assert spark.read.format("delta").load(path).where("dt = 'd1'").count() == count
    assert files_of_day(spark, path, "d1") == files

    why = changes_since(spark, path, {"d1": read, "d2": read}, now)
    assert set(why) == {"d1"}  # d2's rows are untouched
    assert why["d1"] == (f"RESTORE at version {read + 1} changed the day's rows; DELETE at version {read + 2} changed "
                         f"the day's rows with deletion vectors")


def test_a_restore_is_a_change_of_the_days_it_touches_and_a_compaction_is_none(spark, tmp_path):
    from delta.tables import DeltaTable

    from jobs.input_changes import changes_since
    from jobs.tables import replace_partitions, table_version

    path = str(tmp_path / "pairs")
    base = day_table(spark, path, [("d1", "q", "a", 1), ("d2", "q", "a", 1)])
    replace_partitions(spark.createDataFrame([("d2", "q2", "a", 2)], SCHEMA), path, ["d2"])
    for _ in range(2):  # small files to compact
        spark.createDataFrame([("d1", "q9", "a", 1)], SCHEMA).write.format("delta").mode("append").save(path)
    read = table_version(spark, path)
    DeltaTable.forPath(spark, path).optimize().executeCompaction()  # the same rows in other files
    assert changes_since(spark, path, {"d1": read, "d2": read}, table_version(spark, path)) == {}

    DeltaTable.forPath(spark, path).restoreToVersion(base)
    why = changes_since(spark, path, {"d1": read, "d2": read}, table_version(spark, path))
    assert set(why) == {"d1", "d2"} and all(w.startswith("RESTORE at version") for w in why.values())
    assert changes_since(spark, path, {"d1": table_version(spark, path)}, table_version(spark, path)) == {}


def test_a_day_whose_log_is_gone_cannot_be_shown_unchanged(spark, tmp_path):
    from jobs.input_changes import changes_since, log_file
    from jobs.tables import table_version

    path = str(tmp_path / "pairs")
    read = day_table(spark, path, [("d1", "q", "a", 1)])
    spark.createDataFrame([("d2", "q", "a", 1)], SCHEMA).write.format("delta").mode("append").save(path)
    spark.createDataFrame([("d2", "q", "b", 1)], SCHEMA).write.format("delta").mode("append").save(path)
    now = table_version(spark, path)
    Path(log_file(path, read + 1)).unlink()  # as log retention removes old commits
    why = changes_since(spark, path, {"d1": read}, now)
    assert "log" in why["d1"] and "cannot be shown unchanged" in why["d1"]
