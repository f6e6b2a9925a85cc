"""The `hcmrm` command: every job is a subcommand, every subcommand answers --help, and every failure is one line."""

import os
import signal
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

import pytest

from hcmrm.errors import ConcurrentWriteError, InputDataError, ModelError, UsageError
from jobs.cli import command_modules, make_parser
from jobs.common import run_command


def test_every_job_module_is_a_subcommand():
    names = [m.COMMAND for m in command_modules()]
    assert "demo" in names
    assert len(names) == len(set(names)), "two job modules claim the same COMMAND"


@pytest.mark.parametrize("command", [m.COMMAND for m in command_modules()])
def test_help_on_every_subcommand(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        make_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: hcmrm {command}" in out and "--lake" in out


def test_unknown_spark_setting_syntax_is_refused():
    from hcmrm.errors import UsageError
    from jobs.common import spark_conf_overrides

    assert spark_conf_overrides(["spark.a=1", "spark.b=x=y"]) == {"spark.a": "1", "spark.b": "x=y"}
    with pytest.raises(UsageError, match="KEY=VALUE"):
        spark_conf_overrides(["spark.a"])


def test_the_driver_jvm_logs_nothing_by_default_warn_with_debug_and_the_environment_wins(monkeypatch):
    from jobs.common import SPARK_LOG_LEVEL, spark_log_level

    monkeypatch.delenv(SPARK_LOG_LEVEL, raising=False)
    assert (spark_log_level(Namespace()), spark_log_level(Namespace(debug=True))) == ("OFF", "WARN")
    monkeypatch.setenv(SPARK_LOG_LEVEL, "info")
    assert spark_log_level(Namespace(debug=True)) == "INFO"


# --- how a command fails: one line on stderr, an exit code per class ----------------------------


def command(handler, **flags) -> Namespace:
    return Namespace(handler=handler, **flags)


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


@pytest.mark.parametrize("error, code, line", [
    (InputDataError("table videos has no rows for 2024-09-10"), 3,
     "hcmrm x: table videos has no rows for 2024-09-10; check the input tables and --lake"),
    (ModelError("no config.json in /m: not an HCMRM checkpoint"), 4, "hcmrm x: no config.json in /m: not an HCMRM"),
    (ConcurrentWriteError("files were added to dt=2024-09-10"), 5, "hcmrm x: files were added to dt=2024-09-10; "),
    (UsageError("--conf expects KEY=VALUE, got 'a'"), 2, "hcmrm x: --conf expects KEY=VALUE, got 'a'; see --help"),
    (RuntimeError("a bug\nwith a second line"), 1, "hcmrm x: RuntimeError: a bug; rerun with --debug for the full trace"),
    (SystemExit("no usable labeled pairs in f.json"), 1, "hcmrm x: no usable labeled pairs in f.json"),
], ids=["input", "model", "concurrent", "usage", "internal", "exit-message"])
def test_a_failure_is_one_line_on_stderr_with_the_code_of_its_class(error, code, line, capsys):
    def fail(args):
        raise error

    assert run_command(command(fail), "x") == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(line)
    assert "Traceback" not in err


def test_debug_prints_the_trace_then_the_same_line(capsys):
    def fail(args):
        raise RuntimeError("a bug")

    assert run_command(command(fail, debug=True), "x") == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and 'raise RuntimeError("a bug")' in err
    assert last_line(err) == "hcmrm x: RuntimeError: a bug; rerun with --debug for the full trace"


def test_debug_is_a_global_flag_before_or_after_the_command():
    from jobs import params
    from jobs.common import build_parser

    assert make_parser().parse_args(["--debug", "params"]).debug is True
    assert make_parser().parse_args(["params", "--debug"]).debug is True
    assert make_parser().parse_args(["params"]).debug is False
    assert build_parser(params).parse_args(["--debug"]).debug is True  # spark-submit jobs/params.py --debug
    assert not hasattr(build_parser(params).parse_args([]), "debug")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_command_marks_its_run_killed_removes_its_temp_folder_and_says_so(signum, settings, capsys):
    from hcmrm.tracking import runs
    from hcmrm.tracking.store import configure, use_experiment

    client = configure(settings).MlflowClient()
    experiment = use_experiment(settings, "cli-test")
    seen = {}

    def job(args):
        seen["folder"] = runs.temp_dir("hcmrm-model-")
        seen["run"] = client.create_run(experiment, tags={runs.JOB_TAG: "x"}).info.run_id
        runs.adopt_run(client, seen["run"])
        os.kill(os.getpid(), signum)
        time.sleep(30)
        return 0

    before = signal.getsignal(signum)
    assert run_command(command(job), "x") == 128 + signum
    assert signal.getsignal(signum) is before  # the command's handlers are gone with it
    assert client.get_run(seen["run"]).info.status == "KILLED" and not seen["folder"].exists()
    name = signal.Signals(signum).name
    assert last_line(capsys.readouterr().err) == (f"hcmrm x: stopped by {name}; MLflow run(s) {seen['run']} marked "
                                                  "KILLED, temporary folders removed; rerun the command to redo it")


def run_cli(*argv, env=None, timeout=300):
    """`hcmrm ...` in a fresh interpreter: (exit code, stderr)."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), **(env or {})}
    done = subprocess.run([sys.executable, "-m", "jobs.cli", *argv], capture_output=True, text=True, env=env,
                          timeout=timeout)
    return done.returncode, done.stderr


def test_a_usage_error_is_argparses_exit_2():
    code, err = run_cli("score")
    assert code == 2 and last_line(err) == "hcmrm score: error: the following arguments are required: --date"


def test_evaluate_with_an_unknown_model_alias_or_a_corrupt_checkpoint_says_so_in_one_line(settings, tmp_path):
    from hcmrm.model.checkpoint import save_model
    from hcmrm.model.network import build_model
    from tests.jobs.test_score import register_tiny_model

    register_tiny_model(settings, tmp_path)  # @champion exists; @nope does not
    data = tmp_path / "dev.jsonl"
    data.write_text('{"query": "手机", "title": "拍照手机", "label": 2}\n', encoding="utf-8")
    flags = ["--tracking-uri", settings.tracking_uri, "--model-name", settings.model_name, "--data", str(data)]
    code, err = run_cli("evaluate", "--model", f"models:/{settings.model_name}@nope", *flags)
    assert code == 4, err
    assert last_line(err).startswith("hcmrm evaluate: model models:/") and "@nope not found" in last_line(err)
    assert "Traceback" not in err

    save_model(build_model("tiny"), tmp_path / "model")
    (tmp_path / "model" / "model.safetensors").write_bytes(b"\x00" * 16)
    code, err = run_cli("evaluate", "--model", str(tmp_path / "model"), *flags)
    assert code == 4, err
    assert last_line(err).startswith(f"hcmrm evaluate: {tmp_path / 'model' / 'model.safetensors'} cannot be read")
    assert "Traceback" not in err


def test_evaluate_of_a_nan_model_exits_4_with_the_numeric_guards_line(settings, tmp_path):
    from tests.hcmrm.test_scoring import save_nan_model

    data = tmp_path / "dev.jsonl"
    data.write_text('{"query": "手机", "title": "拍照手机", "label": 2}\n', encoding="utf-8")
    code, err = run_cli("evaluate", "--model", str(save_nan_model(tmp_path / "nan")), "--data", str(data),
                        "--tracking-uri", settings.tracking_uri)
    assert code == 4, err
    assert last_line(err).startswith("hcmrm evaluate: the model produced non-finite probabilities (NaN or inf) for 1 "
                                     "of 1 pairs") and "the model is broken, not the data" in last_line(err)
