"""What every job shares: the common flags, settings and Spark session from them, how a command runs and fails."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
import traceback
from types import ModuleType

from hcmrm.errors import INTERNAL, Interrupted, TrackingStoreError, UsageError, classify, interruption
from hcmrm.settings import Settings
from hcmrm.tracking.runs import CommandScope

SPARK_LOG_LEVEL = "HCMRM_SPARK_LOG_LEVEL"  # a user's choice of the driver JVM's log level (spark_log_level)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where things live (override conf/defaults.yaml and the environment)")
    group.add_argument("--lake", help="folder or URI of the Delta lake (HCMRM_LAKE)")
    group.add_argument("--tracking-uri", help="MLflow tracking URI (MLFLOW_TRACKING_URI)")
    group.add_argument("--artifact-root", help="MLflow artifact folder (HCMRM_ARTIFACT_ROOT)")
    group.add_argument("--model-name", help="registered model name (HCMRM_MODEL_NAME)")
    group.add_argument("--spark-profile", help="a profile in conf/spark: local, test, cluster, gpu")
    group.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting; repeatable"
    )
    add_debug_argument(group, default=argparse.SUPPRESS)  # SUPPRESS: `hcmrm --debug <command>` is not reset


def add_debug_argument(parser, default=False) -> None:
    parser.add_argument("--debug", action="store_true", default=default,
                        help="on failure print the full trace, and Spark's own logs (level WARN), not one line")


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings.load(
        {
            "lake": args.lake,
            "tracking_uri": args.tracking_uri,
            "artifact_root": args.artifact_root,
            "model_name": args.model_name,
            "spark_profile": args.spark_profile,
        }
    )


def spark_conf_overrides(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--conf expects KEY=VALUE, got {pair!r}")
        overrides[key] = value
    return overrides


def spark_log_level(args: argparse.Namespace) -> str:
    """The driver JVM's log level: HCMRM_SPARK_LOG_LEVEL when set, else WARN (Spark's own) with --debug, else OFF."""
    return (os.environ.get(SPARK_LOG_LEVEL) or ("WARN" if getattr(args, "debug", False) else "OFF")).upper()


def spark_from_args(args: argparse.Namespace, settings: Settings, app_name: str):
    from jobs.session import spark_session  # here: pyspark loads only for the commands that start Spark

    spark = spark_session(settings.spark_profile, spark_conf_overrides(args.conf), app_name=f"hcmrm-{app_name}",
                          log_level=spark_log_level(args))
    _catch_stop_signals()  # a new SparkContext installs its own SIGINT handler: ours comes back on top
    return spark


def build_parser(module: ModuleType, parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog=module.COMMAND, description=module.HELP)
    module.add_arguments(parser)
    add_common_arguments(parser)
    parser.set_defaults(handler=module.run)
    return parser


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("py4j", "alembic", "urllib3", "matplotlib", "jieba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # MLflow logs a store's SQL error with its whole trace before raising it; the raise is told in one line.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def script_main(module: ModuleType, argv: list[str] | None = None) -> None:
    """The body of `spark-submit jobs/<job>.py ...`: the same parser and function as `hcmrm <job>`."""
    configure_logging()
    args = build_parser(module).parse_args(argv)
    sys.exit(run_command(args, module.COMMAND))


# --- how a command runs, stops and fails ---------------------------------------------------------------


def run_command(args: argparse.Namespace, command: str) -> int:
    """Run the parsed command and return its exit status. A failure is told in one line on stderr,
    `hcmrm <command>: <what went wrong>; <what to do>`, with the exit code of its class (hcmrm.errors)
    and, with --debug, the full trace first. SIGTERM and SIGINT stop it cleanly (hcmrm.tracking.runs)."""
    debug = getattr(args, "debug", False)
    scope = CommandScope()
    try:
        with scope, _stop_signals_raise():
            return args.handler(args) or 0
    except SystemExit as done:  # argparse's exit, or a job's `raise SystemExit("message")`
        if not isinstance(done.code, str):
            raise
        return _fail(command, done.code, INTERNAL, debug)
    except BaseException as error:
        stop = interruption(error)
        if stop is not None:
            if not isinstance(stop, Interrupted):  # a KeyboardInterrupt raised by someone else's SIGINT handler
                stop = Interrupted(signal.SIGINT, time.time())
            runs = f"MLflow run(s) {', '.join(scope.killed)} marked KILLED, " if scope.killed else ""
            return _fail(command, f"{stop}; {runs}temporary folders removed; rerun the command to redo it",
                         stop.exit_code, debug)
        failure = classify(error)
        if isinstance(failure, TrackingStoreError) and not failure.store:
            failure.store = _tracking_uri()
        return _fail(command, failure.line(), failure.exit_code, debug)


def _tracking_uri() -> str:
    """The MLflow store the command was using, if it got as far as configuring one."""
    mlflow = sys.modules.get("mlflow")
    return mlflow.get_tracking_uri() if mlflow is not None else ""


def _fail(command: str, line: str, code: int, debug: bool) -> int:
    if debug and sys.exc_info()[0] is not None:
        traceback.print_exc()
    print(f"hcmrm {command}: {line}", file=sys.stderr, flush=True)
    return code


_previous_handlers: dict = {}  # while a command runs: the handlers of STOP_SIGNALS before it


def _raise_stop(signum, frame):
    for number, handler in _previous_handlers.items():  # a second signal acts as it would have (a force quit)
        signal.signal(number, handler)
    raise Interrupted(signum, time.time())


def _catch_stop_signals() -> None:
    if _previous_handlers and threading.current_thread() is threading.main_thread():
        for number in STOP_SIGNALS:
            signal.signal(number, _raise_stop)


@contextlib.contextmanager
def _stop_signals_raise():
    """SIGTERM and SIGINT raise hcmrm.errors.Interrupted in the main thread while the block runs."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    _previous_handlers.update({number: signal.getsignal(number) for number in STOP_SIGNALS})
    _catch_stop_signals()
    try:
        yield
    finally:
        for number, handler in _previous_handlers.items():
            signal.signal(number, handler)
        _previous_handlers.clear()
