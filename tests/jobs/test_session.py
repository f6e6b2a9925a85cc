"""Spark profiles: inheritance, flag overrides, Delta jars from the cache."""

import pytest

from jobs import session


def test_test_profile_extends_local_and_overrides_keys():
    profile = session.load_profile("test")
    assert profile["master"] == "local[2,4]"
    assert profile["conf"]["spark.ui.enabled"] == "false"
    assert profile["conf"]["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"


def test_gpu_profile_gives_executors_a_gpu_and_leaves_tasks_and_arrow_batches_to_the_job():
    profile = session.load_profile("gpu")
    assert profile["master"] is None and profile["delta_jars"] is False
    conf = profile["conf"]
    assert conf["spark.executor.resource.gpu.amount"] == "1" and conf["spark.executor.memoryOverhead"] == "6g"
    # the scoring stage asks for the GPU itself (udfs.score.scoring_profile); the job bounds its batches
    assert not {"spark.task.resource.gpu.amount", "spark.task.cpus", session.ARROW_BATCH_ROWS} & conf.keys()
    assert "spark.executor.pyspark.memory" not in conf  # an address-space cap, which CUDA exceeds at start


def test_flags_win_over_the_profile():
    conf = session.builder_conf(session.load_profile("cluster"), {"spark.sql.shuffle.partitions": "7"})
    assert conf["spark.sql.shuffle.partitions"] == "7"
    assert "spark.jars.packages" not in conf and "spark.jars" not in conf


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(ValueError, match="known: .*local"):
        session.load_profile("nope")


def test_delta_artifact_matches_installed_versions():
    assert session.delta_artifact().startswith("io.delta:delta-spark_4.2_2.13:")


@pytest.mark.spark
def test_local_session_loads_delta_from_the_cache(spark):
    assert session.cached_delta_jars(), "make setup resolves the jars once"
    assert "delta" in spark.conf.get("spark.sql.extensions").lower()
    assert spark.conf.get("spark.jars", "").count(".jar") >= 1


def test_arrow_batches_are_bounded_by_rows_pairs_and_bytes():
    assert session.ArrowBatches(rows=128).max_rows(pairs_per_row=4096) == 128
    assert session.ArrowBatches(rows=128, pairs=64 * 4096).max_rows(pairs_per_row=4096) == 64
    assert session.ArrowBatches(rows=128, pairs=10).max_rows(pairs_per_row=4096) == 1  # a hot row goes alone
    with pytest.raises(ValueError, match="2 GiB"):
        session.ArrowBatches(bytes=2**31)
    with pytest.raises(ValueError, match="rows and pairs must be >= 1"):
        session.ArrowBatches(rows=0)


@pytest.mark.spark
def test_arrow_batches_apply_the_jobs_bounds_and_put_back_what_the_spark_conf_had(spark, caplog):
    rows, size = session.ARROW_BATCH_ROWS, session.ARROW_BATCH_BYTES
    assert spark.conf.get(rows, None) is None and spark.conf.get(size, None) is None  # the test profile sets neither
    with session.arrow_batches(spark, session.ArrowBatches(rows=128, pairs=8192, bytes=2**24), pairs_per_row=4096):
        assert (spark.conf.get(rows), spark.conf.get(size)) == ("2", str(2**24))
    assert spark.conf.get(rows, None) is None and spark.conf.get(size, None) is None  # Spark's defaults again
    assert not caplog.records

    spark.conf.set(rows, "20000")  # as an old gpu.yaml, spark-defaults or --conf set it
    try:
        with caplog.at_level("WARNING", logger="hcmrm.session"):
            with session.arrow_batches(spark, session.ArrowBatches(rows=128)):
                assert spark.conf.get(rows) == "128"  # the job's bound wins
        assert spark.conf.get(rows) == "20000"
        assert [r.getMessage() for r in caplog.records] == [
            f"{rows}=20000 from the Spark conf is not used: the job's arrow_batch wins ({rows}=128)"]
    finally:
        spark.conf.unset(rows)


@pytest.mark.spark
def test_arrow_batches_hold_no_more_bytes_than_the_bound_into_mapinarrow(spark):
    # 12 rows of 1 MiB (a video's frames): a 3 MiB bound cuts them into batches of at most 3 rows.
    rows = spark.range(12).selectExpr("id", "unhex(repeat('00', 1048576)) AS frames").repartition(1)

    def batch_rows(batches):
        import pyarrow as pa

        for batch in batches:
            yield pa.RecordBatch.from_pydict({"n": [batch.num_rows]})

    with session.arrow_batches(spark, session.ArrowBatches(rows=100, bytes=3 * 2**20)):
        sizes = [r.n for r in rows.mapInArrow(batch_rows, "n long").collect()]
    assert sum(sizes) == 12 and max(sizes) <= 3


def test_local_profiles_retry_a_failed_task():
    assert session.load_profile("local")["master"] == "local[*,4]"  # [cores, attempts per task]
    assert session.load_profile("test")["master"] == "local[2,4]"


def test_the_local_profiles_give_the_driver_a_fixed_2g_heap():
    """In local mode the executors live in the driver JVM: a fixed heap keeps its memory the same for every day
    (make bench-scale: 1M pairs against 200k, 1.05x; a heap free to grow grew 1.49x)."""
    for name in ("local", "test"):
        conf = session.load_profile(name)["conf"]
        assert conf["spark.driver.memory"] == "2g" and conf[session.DRIVER_JAVA_OPTIONS] == "-Xms2g"


def test_quiet_log_levels_give_the_driver_jvm_the_quiet_log4j_file_unless_the_flags_bring_their_own():
    profile = session.load_profile("test")
    quiet = session.builder_conf(profile, {}, "ERROR")[session.DRIVER_JAVA_OPTIONS]
    # the profile's own options (its fixed heap) stay, the quiet file comes after them
    assert quiet == f"-Xms2g -Dlog4j2.configurationFile={session.QUIET_LOG4J.as_uri()}" and session.QUIET_LOG4J.is_file()
    assert session.builder_conf(profile, {}, "WARN")[session.DRIVER_JAVA_OPTIONS] == "-Xms2g"  # --debug: Spark's own
    mine = {session.DRIVER_JAVA_OPTIONS: "-Dlog4j2.configurationFile=/etc/my.properties -Xss4m"}
    assert session.builder_conf(profile, mine, "ERROR")[session.DRIVER_JAVA_OPTIONS] == mine[session.DRIVER_JAVA_OPTIONS]
    added = session.builder_conf(profile, {session.DRIVER_JAVA_OPTIONS: "-Xss4m"}, "ERROR")[session.DRIVER_JAVA_OPTIONS]
    assert added.startswith("-Xss4m -Dlog4j2.configurationFile=")


@pytest.mark.spark
@pytest.mark.parametrize("failure", ["raise", "worker exits"])
def test_a_python_worker_failing_once_is_retried_and_every_row_comes_out_once(spark, tmp_path, failure):
    import pandas as pd

    marker = str(tmp_path / "failed-once")

    def fail_first_attempt(batches):
        import os

        for batch in batches:
            if 7 in set(batch["id"]) and not os.path.exists(marker):  # one task, its first attempt only
                open(marker, "w").close()
                if failure == "raise":
                    raise RuntimeError("a worker failure")
                os._exit(1)  # the Python worker process dies
            yield pd.DataFrame({"id": batch["id"]})

    rows = spark.range(0, 40, numPartitions=4).mapInPandas(fail_first_attempt, "id long").collect()
    assert sorted(r.id for r in rows) == list(range(40))
    assert (tmp_path / "failed-once").exists()
