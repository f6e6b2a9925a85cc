"""The `hcmrm` command: one subcommand per job module in this package.

A module is a command when it defines COMMAND, HELP, add_arguments(parser) and run(args);
`spark-submit jobs/<module>.py` runs the same function through `jobs.common.script_main`.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import jobs
from jobs.common import add_debug_argument, build_parser, configure_logging, run_command


def command_modules() -> list:
    modules = []
    for info in pkgutil.iter_modules(jobs.__path__):
        module = importlib.import_module(f"jobs.{info.name}")
        if hasattr(module, "COMMAND"):
            modules.append(module)
    return sorted(modules, key=lambda m: m.COMMAND)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hcmrm", description="HCMRM relevance labeling on Spark + Delta + MLflow")
    add_debug_argument(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in command_modules():
        build_parser(module, sub.add_parser(module.COMMAND, help=module.HELP, description=module.HELP))
    return parser


def main(argv: list[str] | None = None) -> None:
    configure_logging()
    args = make_parser().parse_args(argv)
    sys.exit(run_command(args, args.command))


if __name__ == "__main__":
    main()
