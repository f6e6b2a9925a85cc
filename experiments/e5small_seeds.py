"""The e5small recipe's seeds and the shipped model: `hcmrm evaluate` JSON per set -> mean +- std and a table.

    runs/e5/train_all.sh          # 3 seeds of conf/train/e5small.yaml, each evaluated (see docs/training.md)
    .venv/bin/python experiments/e5small_seeds.py [--runs runs/e5] [--out experiments/results/e5small]

Reads runs/e5/seed*/eval_<set>.json and runs/e5/shipped/eval_<set>.json (sets: kuake, v0, v1first4000, v1),
copies them to --out and writes summary.json and summary.md there, next to the character-overlap figures of
the same files (experiments/char_overlap.py, overlap.json in --out).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

SETS = {"kuake": "KUAKE-QTR dev (2,913, label >= 2)", "v1first4000": "QBQTC v1 dev, first 4,000 rows (label 2)",
        "v1": "QBQTC v1 dev, all 20,000 (label 2)", "v0": "QBQTC v0 dev (1,300, label >= 1)"}
TARGET = {"auc": 0.03, "spearman": 0.05}  # over character overlap


def read(folder: Path) -> dict:
    out = {}
    for name in SETS:
        path = folder / f"eval_{name}.json"
        if path.exists() and path.stat().st_size:
            out[name] = json.loads(path.read_text())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/e5"))
    parser.add_argument("--out", type=Path, default=Path("experiments/results/e5small"))
    parser.add_argument("--shipped-seed", default="seed0", help="the run the shipped model was copied from")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    overlap = json.loads((args.out / "overlap.json").read_text())
    seeds = {p.name: read(p) for p in sorted(args.runs.glob("seed*")) if p.is_dir()}
    shipped = read(args.runs / "shipped")
    # The shipped model is the fp16 copy of --shipped-seed: that seed's figures are the shipped model's.
    seeds[args.shipped_seed] = {k: v for k, v in shipped.items() if k != "v1"} | seeds.get(args.shipped_seed, {})
    for name, evals in [*seeds.items(), ("shipped", shipped)]:
        for set_name, metrics in evals.items():
            (args.out / f"{name}_{set_name}.json").write_text(json.dumps(metrics, indent=1))
    summary, lines = {}, ["| set | seeds | AUC | Spearman | overlap AUC / Spearman | AUC - target | Spearman - target |",
                          "|---|---|---|---|---|---|---|"]
    for set_name, title in SETS.items():
        rows = [e[set_name] for e in seeds.values() if set_name in e]
        if not rows:
            continue
        auc = [r["auc"] for r in rows]
        rho = [r["spearman"] for r in rows]
        ov = overlap[set_name]
        entry = {"seeds": len(rows), "auc_mean": statistics.mean(auc), "auc_std": statistics.stdev(auc) if len(auc) > 1 else 0.0,
                 "spearman_mean": statistics.mean(rho), "spearman_std": statistics.stdev(rho) if len(rho) > 1 else 0.0,
                 "overlap": ov}
        summary[set_name] = entry
        lines.append(f"| {title} | {len(rows)} | {entry['auc_mean']:.3f} +- {entry['auc_std']:.3f} | "
                     f"{entry['spearman_mean']:.3f} +- {entry['spearman_std']:.3f} | {ov['auc']:.3f} / {ov['spearman']:.3f} | "
                     f"{entry['auc_mean'] - ov['auc'] - TARGET['auc']:+.3f} | "
                     f"{entry['spearman_mean'] - ov['spearman'] - TARGET['spearman']:+.3f} |")
    lines += ["", "| shipped model (seed 0, fp16) | AUC | Spearman | accuracy | NDCG | overlap AUC / Spearman |", "|---|---|---|---|---|---|"]
    for set_name, metrics in shipped.items():
        ov = overlap[set_name]
        lines.append(f"| {SETS[set_name]} | {metrics['auc']:.3f} | {metrics['spearman']:.3f} | {metrics['accuracy']:.3f} | "
                     f"{metrics['ndcg']:.3f} | {ov['auc']:.3f} / {ov['spearman']:.3f} |")
    summary["shipped"] = shipped
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
