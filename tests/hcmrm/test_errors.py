"""Failures sorted into classes a user can act on: each has its exit code and a one-line message with a hint."""

import signal
import time

import pytest

from hcmrm.errors import (
    ConcurrentWriteError, HcmrmError, InputDataError, Interrupted, ModelError, UsageError, classify, interruption,
    is_concurrent_write,
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
    classes = [HcmrmError, UsageError, InputDataError, ModelError, ConcurrentWriteError]
    assert [c.exit_code for c in classes] == [1, 2, 3, 4, 5]
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
