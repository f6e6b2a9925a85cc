"""Calibration of P(label >= 2) on KUAKE-QTR dev and QBQTC dev, before and after temperature scaling.

    .venv/bin/python experiments/calibration.py [--model hcmrm/models/kuake-small-match]

Scores both dev sets once (the production engine, as `hcmrm evaluate`), fits a temperature on each
(hcmrm.train.calibration, as `hcmrm calibrate`) and measures every (fitted on, measured on) pair, so
a temperature is also judged on the set it was not fitted on. Writes experiments/results/calibration.md
(the table), calibration.json and the reliability plot docs/calibration_reliability.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hcmrm.labels import POSITIVE_LABEL, SCORE_WEIGHTS  # noqa: E402
from hcmrm.settings import SHIPPED_MODEL_DIR  # noqa: E402
from hcmrm.train.calibration import fit_temperature, relevance_logit, with_temperature  # noqa: E402
from hcmrm.train.metrics import p_at_least, relevance_metrics, reliability_table  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
SETS = {"KUAKE-QTR dev": DATA / "kuake_qtr" / "KUAKE-QTR_dev.json", "QBQTC dev": DATA / "qbqtc" / "dev.json"}
RESULTS = ROOT / "experiments" / "results"
PLOT = ROOT / "docs" / "calibration_reliability.png"


def score_set(model, path: Path) -> dict:
    """probs [N, 4], labels, queries of one labeled file, texts built as `hcmrm evaluate` builds them."""
    from hcmrm.train.finetune import score_examples
    from hcmrm.train.labeled_data import build_texts, read_labeled, to_examples

    examples = to_examples(build_texts(read_labeled(path).pairs))
    probs, _ = score_examples(model, examples)
    return {"probs": probs, "labels": np.array([e.label for e in examples]), "queries": [e.query for e in examples]}


def measure(scored: dict, temperature: float) -> dict:
    probs = with_temperature(scored["probs"], temperature)
    labels = scored["labels"]
    m = relevance_metrics(labels, probs @ SCORE_WEIGHTS, p_at_least(probs), scored["queries"]).as_dict()
    return {**{k: m[k] for k in ("ece", "brier", "auc", "spearman", "accuracy")},
            "true_irrelevant": float((labels < POSITIVE_LABEL).mean()),  # share of Bad or Less in the gold labels
            "expected_rate": float(probs[:, :POSITIVE_LABEL].sum(axis=1).mean()),  # mean p_bad + p_less
            "argmax_rate": float((probs.argmax(axis=1) < POSITIVE_LABEL).mean())}


def table(rows: list[dict]) -> str:
    head = ("| temperature (fitted on) | measured on | ECE | Brier | AUC | Spearman | irrelevant: gold | "
            "expected rate | argmax rate |\n|---|---|---|---|---|---|---|---|---|")
    lines = [f"| {r['temperature']:.3f} ({r['fitted_on']}) | {r['measured_on']} | {r['ece']:.4f} | {r['brier']:.4f} | "
             f"{r['auc']:.4f} | {r['spearman']:.4f} | {r['true_irrelevant']:.3f} | {r['expected_rate']:.3f} | "
             f"{r['argmax_rate']:.3f} |" for r in rows]
    return "\n".join([head, *lines])


def plot(scored: dict, temperatures: dict, path: Path) -> None:
    """One reliability diagram per dev set: observed share relevant against mean P(label >= 2) per bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(scored), figsize=(5.0 * len(scored), 4.6), dpi=100)
    for ax, (name, s) in zip(np.atleast_1d(axes), scored.items()):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
        for label, t in temperatures.items():
            p = p_at_least(with_temperature(s["probs"], t))
            bins = reliability_table(s["labels"] >= POSITIVE_LABEL, p)
            ece = relevance_metrics(s["labels"], p, p).ece
            ax.plot([b["predicted"] for b in bins], [b["observed"] for b in bins], marker="o",
                    label=f"{label} (ECE {ece:.3f})")
        ax.set_title(f"{name} ({len(s['labels']):,} pairs)")
        ax.set_xlabel("predicted P(label >= 2), mean per bin of 0.1")
        ax.set_ylabel("observed share with label >= 2")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from hcmrm.model.checkpoint import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL_DIR, help="a model folder")
    args = parser.parse_args(argv)
    model = load_model(args.model)
    scored = {name: score_set(model, path) for name, path in SETS.items()}
    fits = {name: fit_temperature(s["labels"] >= POSITIVE_LABEL, relevance_logit(s["probs"]))
            for name, s in scored.items()}
    temperatures = {"as trained": 1.0, **{f"T fitted on {name}": fit.temperature for name, fit in fits.items()}}
    rows = [{"temperature": t, "fitted_on": label.removeprefix("T fitted on "), "measured_on": name, **measure(s, t)}
            for label, t in temperatures.items() for name, s in scored.items()]
    text = table(rows)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "calibration.md").write_text(f"Model: {args.model.name}\n\n{text}\n", encoding="utf-8")
    (RESULTS / "calibration.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    plot(scored, {"as trained (T = 1)": 1.0,
                  **{f"T = {fit.temperature:.2f}, fitted on {name}": fit.temperature for name, fit in fits.items()}},
         PLOT)
    print(f"plot: {PLOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
