"""`hcmrm score` failing as a user meets it: one line on stderr, the exit code of its class, no Java stack,
and a stopped run marked KILLED with its model copy removed. Each case runs the command in a fresh process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.hcmrm.test_scoring import save_nan_model
from tests.jobs.test_score import DAY1, make_settings, register_tiny_model, write_lake

pytestmark = [pytest.mark.spark, pytest.mark.slow]  # each case starts its own JVM: ~30 s on the shared machine

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    """Settings with the test lake written, version 1 @champion and version 2 with corrupt weights."""
    from hcmrm.tracking.registry import register_version
    from hcmrm.tracking.model_uri import registered_version as resolve_model_version

    root = tmp_path_factory.mktemp("clean-failures")
    settings = make_settings(root)
    write_lake(spark, settings)
    register_tiny_model(settings, root)
    good = resolve_model_version(settings, f"models:/{settings.model_name}/1")
    corrupt = register_version(settings, good.run_id, good.source.replace("/model", "/corrupt"))
    source = Path(urlparse(good.source).path)
    (source.parent / "corrupt").mkdir()
    for f in source.iterdir():  # the same checkpoint with its weights cut in half: config.json still reads
        data = f.read_bytes()
        (source.parent / "corrupt" / f.name).write_bytes(data[: len(data) // 2] if f.suffix == ".safetensors" else data)
    assert str(corrupt.version) == "2"
    save_nan_model(source.parent / "nan")  # loads fine, every probability NaN
    assert str(register_version(settings, good.run_id, good.source.replace("/model", "/nan")).version) == "3"
    return settings


def flags(settings, **override) -> list[str]:
    values = {"lake": settings.lake, "tracking-uri": settings.tracking_uri, "artifact-root": settings.artifact_root,
              "model-name": settings.model_name, "spark-profile": "test", **override}
    return ["--date", DAY1, "--device", "cpu", *(x for k, v in values.items() for x in (f"--{k}", v))]


def environment() -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HCMRM_SPARK_LOG_LEVEL", None)  # the default a user gets: quiet
    return env


def score(*argv) -> tuple[int, list[str]]:
    done = subprocess.run([sys.executable, "-m", "jobs.cli", "score", *argv], capture_output=True, text=True,
                          env=environment(), timeout=600)
    return done.returncode, done.stderr.strip().splitlines()


def assert_one_clean_line(lines: list[str], start: str) -> None:
    assert lines[-1].startswith(start), "\n".join(lines)
    assert sum(line.startswith("hcmrm score:") for line in lines) == 1
    assert not [line for line in lines if line.startswith("\tat ") or "Traceback" in line], "\n".join(lines)
    assert len(lines) <= 6, "\n".join(lines)  # the JVM's one startup warning, our INFO lines, the failure


def test_a_missing_lake_folder_is_an_input_data_error(lake, tmp_path):
    code, lines = score(*flags(lake, lake=str(tmp_path / "no-lake")))
    assert code == 3
    assert_one_clean_line(lines, f"hcmrm score: input table query_ad_pairs cannot be read at {tmp_path / 'no-lake'}")
    assert "[PATH_NOT_FOUND]" in lines[-1] and lines[-1].endswith("`hcmrm build-lake` writes the sample lake")


def test_an_unknown_model_alias_is_a_model_error(lake):
    code, lines = score(*flags(lake), "--model-uri", f"models:/{lake.model_name}@nope")
    assert code == 4
    assert_one_clean_line(lines, f"hcmrm score: model models:/{lake.model_name}@nope not found in the tracking store")


def test_a_corrupt_checkpoint_is_a_model_error_even_when_a_worker_finds_it(lake):
    code, lines = score(*flags(lake), "--model-version", "2")
    assert code == 4
    assert_one_clean_line(lines, "hcmrm score: ")
    assert "model.safetensors cannot be read, the file is corrupt or truncated" in lines[-1]


def test_a_nan_model_fails_on_the_drivers_canary_before_spark_starts(lake):
    code, lines = score(*flags(lake), "--model-version", "3")
    assert code == 4
    assert_one_clean_line(lines, "hcmrm score: the model produced non-finite probabilities (NaN or inf) for 4 of 4 "
                                 "pairs (first in ad canary-frames); the model is broken, not the data; check --model-uri")
    assert not [line for line in lines if "incubator" in line]  # the JVM never started: seconds, not minutes
    assert not Path(lake.table("relevance_scores")).exists() and not Path(lake.table("scoring_rejects")).exists()


STALLED_SCORE = textwrap.dedent("""
    import sys, time
    import jobs.score

    def stalled(spark, settings, config, date, model, run_id):  # the run is open, Spark up, the model copied
        print(run_id, model.local_dir, flush=True)
        time.sleep(600)

    jobs.score._score_and_write = stalled
    from jobs.cli import main
    main(sys.argv[1:])
""")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_score_marks_its_run_killed_and_removes_the_model_copy(lake, signum):
    from hcmrm.tracking.store import configure

    process = subprocess.Popen([sys.executable, "-c", STALLED_SCORE, "score", *flags(lake)], env=environment(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_id, model_dir = process.stdout.readline().split()
        assert Path(model_dir).is_dir()
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signum
    name = signal.Signals(signum).name
    assert_one_clean_line(err.strip().splitlines(), f"hcmrm score: stopped by {name}; MLflow run(s) {run_id} marked "
                                                    "KILLED, temporary folders removed")
    assert configure(lake).MlflowClient().get_run(run_id).info.status == "KILLED"
    assert not Path(model_dir).exists() and not Path(model_dir).parent.exists()  # the download folder too


def test_a_successful_score_over_tables_with_deletion_vectors_leaves_no_spark_lines(spark, lake, tmp_path):
    """Without --debug nothing of Spark's logging reaches stderr, on success too: no ERROR line, no JSON log
    line, no Java stack (Delta logs errors it recovers from when it reads deletion vectors)."""
    import dataclasses

    from delta.tables import DeltaTable

    own = dataclasses.replace(lake, lake=str(tmp_path / "lake"))
    write_lake(spark, own)
    path = own.table("query_ad_pairs")
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')")
    DeltaTable.forPath(spark, path).delete(f"dt = '{DAY1}' AND query = '英语'")
    code, lines = score(*flags(own))
    assert code == 0, "\n".join(lines)
    spark_lines = [x for x in lines if " ERROR " in x or x.lstrip().startswith("{") or x.startswith("\tat ")]
    assert not spark_lines, "\n".join(lines)
