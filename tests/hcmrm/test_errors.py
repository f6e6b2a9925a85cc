"""Failures sorted into classes a user can act on: each has its exit code and a one-line message with a hint."""

import signal
import time

import pytest

from hcmrm.errors import (
    ConcurrentWriteError, DiskFullError, HcmrmError, InputDataError, Interrupted, ModelError, TrackingStoreError,
    UsageError, classify, interruption, is_concurrent_write,
)


def raised(make):
    """The exception `make()` raises (with its __cause__/__context__ chain, as a job would see it)."""
    with pytest.raises(BaseException) as info:
        make()
    return info.value


def wrapped(inner: BaseException, message: str):
    def make():
        try:
            raise inner
        except BaseException as err:
            raise RuntimeError(message) from err

    return raised(make)


def test_each_class_has_its_own_exit_code():
    classes = [HcmrmError, UsageError, InputDataError, ModelError, ConcurrentWriteError, TrackingStoreError,
               DiskFullError]
    assert [c.exit_code for c in classes] == [1, 2, 3, 4, 5, 6, 7]
    assert Interrupted(signal.SIGTERM, 0).exit_code == 143 and Interrupted(signal.SIGINT, 0).exit_code == 130


def test_an_hcmrm_error_anywhere_in_the_chain_is_what_the_user_is_told():
    error = wrapped(InputDataError("table videos has no rows\nfor 2024-09-10", hint="run the upstream job"), "x")
    found = classify(error)
    assert isinstance(found, InputDataError)
    assert found.line() == "table videos has no rows for 2024-09-10; run the upstream job"


def test_a_delta_commit_conflict_is_a_concurrent_write_error():
    from delta.exceptions import ConcurrentAppendException

    conflict = ConcurrentAppendException(message="[DELTA_CONCURRENT_APPEND.WITH_PARTITION_HINT] Files were added "
                                                 "to partition [dt=2024-09-10] by a concurrent update.")
    assert isinstance(classify(conflict), ConcurrentWriteError) and is_concurrent_write(conflict)
    as_java_text = RuntimeError("py4j: io.delta.exceptions.ConcurrentAppendException: Files were added ...")
    assert isinstance(classify(as_java_text), ConcurrentWriteError)
    assert not is_concurrent_write(ValueError("a bad value"))


def test_a_missing_table_path_is_an_input_data_error_on_one_line_without_the_sqlstate():
    from pyspark.errors import AnalysisException

    missing = AnalysisException(message="[PATH_NOT_FOUND] Path does not exist: file:/nowhere/videos. SQLSTATE: 42K03")
    found = classify(wrapped(missing, "input table videos cannot be read at /nowhere/videos: " + str(missing)))
    assert isinstance(found, InputDataError) and found.exit_code == 3
    assert found.line().startswith("input table videos cannot be read at /nowhere/videos: [PATH_NOT_FOUND] Path "
                                   "does not exist: file:/nowhere/videos; check the input tables and --lake")


def test_an_unknown_model_alias_in_mlflow_is_a_model_error(settings):
    from hcmrm.tracking.model_uri import registered_version as resolve_model_version
    from hcmrm.tracking.store import configure

    configure(settings).MlflowClient().search_experiments()  # the store exists; the model does not
    found = classify(raised(lambda: resolve_model_version(settings, f"models:/{settings.model_name}@nope")))
    assert isinstance(found, ModelError) and found.exit_code == 4
    assert "not found in the tracking store" in found.line() and "--tracking-uri" in found.line()


def test_a_corrupt_safetensors_file_is_a_model_error(tmp_path):
    from safetensors.torch import load_file

    (tmp_path / "w.safetensors").write_bytes(b"\xff" * 64)
    found = classify(raised(lambda: load_file(str(tmp_path / "w.safetensors"))))
    assert isinstance(found, ModelError) and found.line().startswith("the model's weights cannot be read: ")


def test_an_hcmrm_error_raised_in_a_spark_worker_comes_back_as_its_class():
    from pyspark.errors import PythonException

    worker = PythonException(message=(
        "An exception was thrown from the Python worker. Please see the stack trace below.\n"
        "Traceback (most recent call last):\n  File \"/x/checkpoint.py\", line 52, in load_model\n"
        "safetensors_rust.SafetensorError: Error while deserializing header: HeaderTooLarge\n\n"
        "The above exception was the direct cause of the following exception:\n\n"
        "hcmrm.errors.ModelError: /m/model.safetensors cannot be read, the file is corrupt or truncated\n"))
    found = classify(worker)
    assert type(found) is ModelError
    assert str(found) == "/m/model.safetensors cannot be read, the file is corrupt or truncated"


def test_anything_else_is_internal_and_says_how_to_see_more():
    found = classify(ValueError("boom\nsecond line"))
    assert type(found) is HcmrmError and found.exit_code == 1
    assert found.line() == "ValueError: boom; rerun with --debug for the full trace"


def test_a_stop_is_found_even_when_cleanup_then_failed():
    stop = Interrupted(signal.SIGTERM, time.time())
    assert str(stop) == "stopped by SIGTERM"

    def make():
        try:
            raise stop
        finally:
            raise ConnectionError("the Spark gateway is gone")  # a finally block running during the stop

    assert interruption(raised(make)) is stop
    assert interruption(ValueError("no")) is None


def test_an_unreadable_data_file_names_its_table_partition_and_file():
    from pyspark.errors import AnalysisException

    file = "file:/data/lake/query_ad_pairs/dt=2024-09-10/part-00000-1f.c000.snappy.parquet"
    java = (f"An error occurred while calling o142.collectToPython.\n: org.apache.spark.SparkException: "
            f"[FAILED_READ_FILE.NO_HINT] Encountered error while reading file {file}.  SQLSTATE: KD001\n"
            f"\tat org.apache.spark.sql.errors.QueryExecutionErrors$.cannotReadFilesError(...)\n"
            f"Caused by: java.lang.RuntimeException: {file} is not a Parquet file. Expected magic number at tail\n")
    found = classify(wrapped(AnalysisException(message=java), "o142.collectToPython"))
    assert isinstance(found, InputDataError) and found.exit_code == 3
    assert found.line().startswith(f"table query_ad_pairs, partition dt=2024-09-10: data file {file} cannot be "
                                   f"read (RuntimeException: {file} is not a Parquet file. Expected magic number")
    assert "RESTORE the table" in found.line() and "\n" not in found.line()


def test_a_full_disk_is_its_own_class_naming_the_file():
    full = OSError(28, "No space left on device", "/tmp/hcmrm-model-x/model.zip")
    found = classify(wrapped(full, "writing the archive"))
    assert isinstance(found, DiskFullError) and found.exit_code == 7
    assert found.line().startswith("out of disk space writing /tmp/hcmrm-model-x/model.zip: No space left on device;")
    java = RuntimeError("py4j: java.io.IOException: No space left on device")
    assert classify(java).line().startswith("out of disk space: No space left on device; free space")


@pytest.mark.parametrize("said, told", [
    ("(sqlite3.OperationalError) attempt to write a readonly database", "is read-only"),
    ("(sqlite3.OperationalError) database is locked", "is locked by another process"),
    ("API request to http://mlflow:5000/api/2.0/mlflow/runs/create failed with exception "
     "HTTPConnectionPool(host='mlflow', port=5000): Max retries exceeded", "is unreachable"),
])
def test_a_tracking_store_that_cannot_be_written_is_said_so(said, told):
    class OperationalError(Exception):  # sqlalchemy.exc's, by name
        pass

    found = classify(wrapped(OperationalError(said), "MlflowException: " + said))
    assert isinstance(found, TrackingStoreError) and found.exit_code == 6
    found.store = "sqlite:////data/mlruns.db"
    assert found.line().startswith(f"the MLflow tracking store sqlite:////data/mlruns.db {told}; make the store")


def test_a_lost_spark_gateway_is_not_a_tracking_store_failure():
    lost = ConnectionRefusedError(111, "Connection refused")
    found = classify(wrapped(lost, "An error occurred while trying to connect to the Java server (127.0.0.1:4242)"))
    assert not isinstance(found, TrackingStoreError) and found.exit_code == 1
