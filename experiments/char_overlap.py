"""The character-overlap baseline: the share of the query's distinct characters found in the title.

    .venv/bin/python experiments/char_overlap.py [FILE ...] [--positive-label 2] [--out results.json]

Defaults to KUAKE-QTR dev and QBQTC dev from ../shared/data. It needs no training, so it is the
bar any learned model has to clear (reference on KUAKE-QTR dev: AUC 0.782, Spearman 0.461).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hcmrm.train.labeled_data import read_labeled  # noqa: E402
from hcmrm.train.metrics import relevance_metrics  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_FILES = (DATA / "kuake_qtr" / "KUAKE-QTR_dev.json", DATA / "qbqtc" / "dev.json")


def char_overlap(query: str, title: str) -> float:
    """|distinct query chars that occur in the title| / |distinct query chars| (0 for an empty query)."""
    chars = set(query)
    return len(chars & set(title)) / len(chars) if chars else 0.0


def evaluate_file(path: str | Path, positive_label: int = 2) -> dict:
    pairs = read_labeled(path).pairs
    scores = [char_overlap(q, t) for q, t in zip(pairs["query"], pairs["title"])]
    # The overlap is a share in [0, 1]; read it as P(relevant) for the accuracy at 0.5.
    metrics = relevance_metrics(pairs["label"], scores, scores, pairs["query"], positive_label)
    return metrics.as_dict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", default=[str(p) for p in DEFAULT_FILES])
    parser.add_argument("--positive-label", type=int, default=2, help="labels >= this are relevant (AUC)")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    results = {str(path): evaluate_file(path, args.positive_label) for path in args.files}
    text = json.dumps(results, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
