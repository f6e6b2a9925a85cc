"""`hcmrm demo`: run the whole flow on the shipped sample, step by step, then say where everything is."""

from __future__ import annotations

import argparse
import sys
import time

import yaml

from hcmrm.settings import CONF_DIR, Settings
from jobs.common import script_main, settings_from_args

COMMAND = "demo"
HELP = "run every job on the shipped sample (conf/jobs/demo.yaml) and print where the outputs are"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", default=str(CONF_DIR / "jobs" / "demo.yaml"), help="YAML file listing the steps")


def common_flags(settings: Settings) -> list[str]:
    return [
        "--lake", settings.lake,
        "--tracking-uri", settings.tracking_uri,
        "--artifact-root", settings.artifact_root,
        "--model-name", settings.model_name,
        "--spark-profile", settings.spark_profile,
    ]  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from jobs.cli import make_parser

    settings = settings_from_args(args)
    steps = yaml.safe_load(open(args.steps))["steps"]
    parser = make_parser()
    started = time.time()
    for number, step in enumerate(steps, 1):
        print(f"\n=== step {number}/{len(steps)}: hcmrm {' '.join(map(str, step))}", flush=True)
        step_args = parser.parse_args([str(s) for s in step] + common_flags(settings))
        code = step_args.handler(step_args)
        if code:
            print(f"step {number} failed with exit code {code}", file=sys.stderr)
            return code
    print(f"\n=== demo finished in {time.time() - started:.0f} s")
    print(f"Delta lake:       {settings.lake}  (one folder per table)")
    print(f"MLflow store:     {settings.tracking_uri}")
    print(f"MLflow artifacts: {settings.artifact_root}")
    return 0


if __name__ == "__main__":
    script_main(sys.modules[__name__])
