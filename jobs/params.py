"""params: the parameter count of each model preset, in total and per tower. No Spark, no weights.

    hcmrm params [--preset base] [--json]
    spark-submit jobs/params.py [same flags]

Models are built on PyTorch's meta device: shapes only, no memory, instant even for `base`.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from hcmrm.model.config import PRESETS, preset
from hcmrm.model.network import HCMRM
from jobs.common import script_main

COMMAND = "params"
HELP = "print the parameter count of each model preset (total and per tower)"

PARTS = ("text", "fusion", "vision", "heads", "total")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", action="append", choices=sorted(PRESETS),
                        help="a preset to count (repeatable); default: all")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def count_parameters(name: str) -> dict[str, int]:
    """{text, fusion, vision, heads, total} parameter counts of a preset's model."""
    with torch.device("meta"):
        return HCMRM(preset(name)).tower_parameters()


def format_table(counts: dict[str, dict[str, int]]) -> str:
    lines = [f"{'preset':<8}" + "".join(f"{part:>14}" for part in PARTS)]
    for name, parts in counts.items():
        lines.append(f"{name:<8}" + "".join(f"{parts[part]:>14,}" for part in PARTS))
    lines.append("text = embeddings + text layers; fusion = layers with cross-attention; vision = ViT + "
                 "projection to fusion width + frame/no-image embeddings; heads = relevance, ITC, ITM, PQVM, MLM")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    counts = {name: count_parameters(name) for name in args.preset or PRESETS}
    counts = dict(sorted(counts.items(), key=lambda item: item[1]["total"]))  # smallest first
    print(json.dumps(counts, indent=2) if args.json else format_table(counts))
    return 0


if __name__ == "__main__":
    script_main(sys.modules[__name__])
