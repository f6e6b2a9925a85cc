"""A trained model folder -> the shipped copy: only what differs from its pinned base, in fp16.

    .venv/bin/python scripts/ship_model.py runs/e5/seed0/model hcmrm/models/e5small-zh-match

The source folder is a training output (fp32, low-rank adapters unmerged); the copy stores the adapters, the
new layers and heads as fp16 and is what is evaluated and registered (load_model merges the adapters).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hcmrm.model.checkpoint import load_config_json, new_model, read_state, save_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args()
    config = load_config_json(args.source)
    model = new_model(config)
    model.load_state_dict(read_state(args.source, config))
    save_model(model, args.target, half=True)
    size = sum(p.stat().st_size for p in args.target.iterdir() if p.is_file())
    print(f"{args.target}: {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
