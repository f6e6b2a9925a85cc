"""How far lexical matching alone goes: a logistic regression on a few overlap features, trained on the
training sets (never on a dev set), scored on KUAKE-QTR dev and QBQTC dev.

    .venv/bin/python experiments/lexical_ceiling.py [--out experiments/results/lexical_ceiling.json]

A model trained from scratch on these pairs learns mostly lexical matching (the match-aware input
hands it exactly that). If the best linear mix of overlap features stays under a target, reaching it
needs knowledge that is not in the characters: semantics, which a from-scratch 3M-parameter model
does not get from ~40k pairs. Features: share of query characters / bigrams in the title, longest common
substring over the query length, query is a substring, share of title characters in the query,
log lengths of both.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from hcmrm.train.finetune import DEFAULT_LABEL_MAPS  # noqa: E402
from hcmrm.train.labeled_data import read_labeled, read_sources  # noqa: E402
from hcmrm.train.metrics import relevance_metrics  # noqa: E402

DATA = REPO.parent / "shared" / "data"
KUAKE = f"kuake={DATA / 'kuake_qtr' / 'KUAKE-QTR_train.json'}"
QBQTC_V0 = f"qbqtc={DATA / 'qbqtc_v0_listwise' / 'train.json'}"
TRAIN_SETS = {"kuake_train": [KUAKE], "qbqtc_v0_train": [QBQTC_V0], "both": [KUAKE, QBQTC_V0]}
DEV_SETS = {"kuake_qtr_dev": DATA / "kuake_qtr" / "KUAKE-QTR_dev.json", "qbqtc_dev": DATA / "qbqtc" / "dev.json"}


def longest_common_substring(query: str, title: str) -> int:
    best = 0
    for start in range(len(query)):
        end = start + best + 1  # only a longer match can improve
        while end <= len(query) and query[start:end] in title:
            best, end = end - start, end + 1
    return best


def features(query: str, title: str) -> list[float]:
    bigrams = [query[i:i + 2] for i in range(len(query) - 1)]
    return [
        sum(c in title for c in query) / max(len(query), 1),
        sum(b in title for b in bigrams) / max(len(bigrams), 1),
        longest_common_substring(query, title) / max(len(query), 1),
        float(query in title),
        sum(c in query for c in title) / max(len(title), 1),
        math.log1p(len(query)),
        math.log1p(len(title)),
    ]


def matrix(pairs) -> np.ndarray:
    return np.array([features(q, t) for q, t in zip(pairs["query"], pairs["title"])])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "experiments" / "results" / "lexical_ceiling.json"))
    args = parser.parse_args(argv)
    devs = {name: read_labeled(path).pairs for name, path in DEV_SETS.items()}
    results = {}
    for name, sources in TRAIN_SETS.items():
        train = read_sources(sources, DEFAULT_LABEL_MAPS).pairs
        model = LogisticRegression(max_iter=2000).fit(matrix(train), train["label"] >= 2)
        results[name] = {}
        for dev, pairs in devs.items():
            p = model.predict_proba(matrix(pairs))[:, 1]  # P(label >= 2): the score and the probability
            metrics = relevance_metrics(pairs["label"], p, p, pairs["query"]).as_dict()
            results[name][dev] = {k: metrics[k] for k in ("auc", "spearman", "n")}
    text = json.dumps(results, indent=2)
    print(text)
    Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
