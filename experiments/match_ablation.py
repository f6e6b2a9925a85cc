"""Match-aware input, with and without, from scratch on KUAKE-QTR train; dev metrics on KUAKE-QTR and QBQTC.

    .venv/bin/python experiments/match_ablation.py [--seeds 0 1 2] [--epochs 2] [--rows match plain cached querymatch]

Rows: `match` (match-aware input, the shipped recipe), `plain` (the paper's input), `cached` (the match
recipe with `text_attention: cached`: video-text tokens attend only to the video text, docs/training.md),
`querymatch` (diagnostic: the match recipe with `full` attention but the text side's match ids dropped).

Each run fine-tunes the ablation's small model (conf/train/ablation.yaml `model`, no pre-training,
hierarchical softmax) and saves it under .cache/match_ablation/<run>/model; its metrics go to
experiments/results/match_ablation/<run>.json at once, and a finished run is skipped on a rerun, so a
cut-off run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import yaml  # noqa: E402

from hcmrm.config import from_dict  # noqa: E402
from hcmrm.settings import CONF_DIR  # noqa: E402
from hcmrm.train.finetune import FinetuneConfig, evaluate, finetune  # noqa: E402
from hcmrm.train.labeled_data import build_texts, read_labeled, to_examples  # noqa: E402

DATA = REPO.parent / "shared" / "data"
KUAKE_TRAIN = DATA / "kuake_qtr" / "KUAKE-QTR_train.json"
DEV_SETS = {"kuake_qtr_dev": DATA / "kuake_qtr" / "KUAKE-QTR_dev.json", "qbqtc_dev": DATA / "qbqtc" / "dev.json"}
RESULTS = REPO / "experiments" / "results" / "match_ablation"
CACHE = REPO / ".cache" / "match_ablation"


def examples(path: Path) -> list:
    return to_examples(build_texts(read_labeled(path).pairs))


ROWS = {  # row -> (match_embeddings, text_attention, match_text_side)
    "match": (True, "full", True),
    "plain": (False, "full", True),
    "cached": (True, "cached", True),  # cached attention drops the text side's match ids whatever the flag
    "querymatch": (True, "full", False),  # diagnostic: what dropping the text side's match ids alone costs
}
LABELS = {"match": "match-aware", "plain": "paper (no match input)", "cached": "match-aware, cached text attention",
          "querymatch": "match-aware, query side only (full attention)"}


def run_config(row: str, seed: int, epochs: int) -> FinetuneConfig:
    match, attention, text_side = ROWS[row]
    model = yaml.safe_load((CONF_DIR / "train" / "ablation.yaml").read_text())["model"]
    text = {**model["text"], "match_embeddings": match, "match_text_side": text_side}
    model = {**model, "text": text, "text_attention": attention}
    return from_dict(FinetuneConfig, {
        "preset": "small", "model": model,
        "loop": {"epochs": epochs, "batch_size": 32, "log_every": 200, "seed": seed,
                 "optim": {"lr": 1.0e-3, "warmup_steps": 100, "weight_decay": 0.01}},
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=["match", "plain"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    train, devs = None, None
    for seed in args.seeds:
        for row in args.rows:
            name = f"{row}-{args.epochs}ep-seed{seed}"
            out = RESULTS / f"{name}.json"
            if out.exists():
                continue
            train = train or examples(KUAKE_TRAIN)
            devs = devs or {k: examples(p) for k, p in DEV_SETS.items()}
            started = time.time()
            print(f"{name}: training (progress bar on stderr), then scoring {', '.join(devs)}", flush=True)
            result = finetune(train, None, run_config(row, seed, args.epochs), out_dir=CACHE / name, progress=True)
            record = {"run": name, "match_embeddings": ROWS[row][0], "text_attention": ROWS[row][1],
                      "match_text_side": ROWS[row][2], "seed": seed, "epochs": args.epochs,
                      "seconds": round(time.time() - started, 1), "model_dir": str(result.model_dir),
                      **{k: evaluate(result.model, d).as_dict() for k, d in devs.items()}}
            out.write_text(json.dumps(record, indent=2) + "\n")
            print(json.dumps({k: record[k] for k in ("run", "seconds")}), flush=True)
    print(summary_table(args.epochs))
    return 0


def summary_table(epochs: int) -> str:
    """Mean +- std over the seeds of each row, as a Markdown table (also written to results/match_ablation.md)."""
    lines = ["| input | seeds | KUAKE-QTR dev AUC | Spearman | QBQTC dev AUC | Spearman |", "|---|---|---|---|---|---|"]
    for kind in ROWS:
        runs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob(f"{kind}-{epochs}ep-seed*.json"))]
        if not runs:
            continue
        cells = []
        for dev in DEV_SETS:
            for metric in ("auc", "spearman"):
                values = [r[dev][metric] for r in runs]
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                cells.append(f"{statistics.mean(values):.3f} +- {spread:.3f}")
        lines.append(f"| {LABELS[kind]} | {len(runs)} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    (RESULTS.parent / "match_ablation.md").write_text(table + "\n")
    return table


if __name__ == "__main__":
    sys.exit(main())
