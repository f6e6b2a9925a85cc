"""What every job shares: the common flags, settings and Spark session from them, the script entry."""

from __future__ import annotations

import argparse
import logging
import sys
from types import ModuleType

from hcmrm.settings import Settings


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where things live (override hcmrm/conf/defaults.yaml and the environment)")
    group.add_argument("--lake", help="folder or URI of the Delta lake (HCMRM_LAKE)")
    group.add_argument("--tracking-uri", help="MLflow tracking URI (MLFLOW_TRACKING_URI)")
    group.add_argument("--artifact-root", help="MLflow artifact folder (HCMRM_ARTIFACT_ROOT)")
    group.add_argument("--model-name", help="registered model name (HCMRM_MODEL_NAME)")
    group.add_argument("--spark-profile", help="a profile in hcmrm/conf/spark: local, test, cluster, gpu")
    group.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting; repeatable"
    )


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
            raise SystemExit(f"--conf expects KEY=VALUE, got {pair!r}")
        overrides[key] = value
    return overrides


def spark_from_args(args: argparse.Namespace, settings: Settings, app_name: str):
    from jobs.session import spark_session

    return spark_session(settings.spark_profile, spark_conf_overrides(args.conf), app_name=f"hcmrm-{app_name}")


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


def script_main(module: ModuleType, argv: list[str] | None = None) -> None:
    """The body of `spark-submit jobs/<job>.py ...`: the same parser and function as `hcmrm <job>`."""
    configure_logging()
    args = build_parser(module).parse_args(argv)
    sys.exit(args.handler(args) or 0)
