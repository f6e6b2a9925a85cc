"""Offline relevance metrics: AUC (label >= positive), Spearman, accuracy, per-query NDCG, calibration.

All of them take plain sequences (labels, scores) so they serve fine-tuning, `hcmrm evaluate`
and the experiments alike. Ties are ranked by their average rank, so a constant scorer gets
AUC 0.5 and a Spearman of NaN (undefined), never a flattering number.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import rankdata

from hcmrm.labels import POSITIVE_LABEL


@dataclass(frozen=True)
class Metrics:
    auc: float  # ROC AUC of `score` for label >= positive_label; NaN when one class is missing
    spearman: float  # rank correlation of `score` with the graded label; NaN when either is constant
    accuracy: float  # share where (P(label >= positive_label) >= 0.5) agrees with (label >= positive_label)
    ndcg: float | None  # mean NDCG over queries with >= 2 candidates and a relevant one; None if none
    n: int  # number of scored pairs
    ece: float = float("nan")  # expected calibration error of P(label >= positive_label), 10 equal-width bins
    brier: float = float("nan")  # mean squared error of P(label >= positive_label) against 0/1

    def as_dict(self) -> dict:
        """JSON-ready: NaN becomes None (JSON has no NaN)."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def auc(positive: Sequence[bool], scores: Sequence[float]) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney U) formula; ties count one half."""
    positive = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)  # average ranks for ties
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def spearman(labels: Sequence[float], scores: Sequence[float]) -> float:
    """Spearman's rho: Pearson correlation of the (tie-averaged) ranks."""
    a = rankdata(np.asarray(labels, dtype=np.float64))
    b = rankdata(np.asarray(scores, dtype=np.float64))
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def p_at_least(probs, label: int = POSITIVE_LABEL) -> np.ndarray:
    """[N, 4] grade probabilities -> [N] the model's P(grade >= label)."""
    return np.asarray(probs, dtype=np.float64)[:, label:].sum(axis=1)


def expected_calibration_error(positive: Sequence[bool], p_positive: Sequence[float], bins: int = 10) -> float:
    """ECE: over equal-width bins of the predicted probability, |mean prediction - share positive|,
    weighted by the bin's share of pairs. 0 = the probabilities are the observed rates."""
    positive = np.asarray(positive, dtype=np.float64)
    p = np.asarray(p_positive, dtype=np.float64)
    if len(p) == 0:
        return float("nan")
    which = np.minimum((p * bins).astype(int), bins - 1)  # p = 1.0 falls in the last bin
    gap = np.abs(np.bincount(which, p, bins) - np.bincount(which, positive, bins))  # sums per bin
    return float(gap.sum() / len(p))  # sum over bins of count/N * |mean p - mean y|


def reliability_table(positive: Sequence[bool], p_positive: Sequence[float], bins: int = 10) -> list[dict]:
    """Per non-empty bin: its range, pairs, mean predicted probability and observed share positive."""
    positive = np.asarray(positive, dtype=np.float64)
    p = np.asarray(p_positive, dtype=np.float64)
    which = np.minimum((p * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        if inside.any():
            rows.append({"low": b / bins, "high": (b + 1) / bins, "n": int(inside.sum()),
                         "predicted": float(p[inside].mean()), "observed": float(positive[inside].mean())})
    return rows


def brier_score(positive: Sequence[bool], p_positive: Sequence[float]) -> float:
    positive = np.asarray(positive, dtype=np.float64)
    if len(positive) == 0:
        return float("nan")
    return float(((np.asarray(p_positive, dtype=np.float64) - positive) ** 2).mean())


def binary_accuracy(positive: Sequence[bool], p_positive: Sequence[float], threshold: float = 0.5) -> float:
    positive = np.asarray(positive, dtype=bool)
    if len(positive) == 0:
        return float("nan")
    return float(((np.asarray(p_positive, dtype=np.float64) >= threshold) == positive).mean())


def dcg(gains: Sequence[float]) -> float:
    """Discounted cumulative gain with gain 2^rel - 1 and discount log2(rank + 1)."""
    return float(sum((2.0**g - 1.0) / math.log2(i + 2) for i, g in enumerate(gains)))


def ndcg(queries: Sequence[str], labels: Sequence[float], scores: Sequence[float], k: int | None = None) -> float | None:
    """Mean NDCG@k over queries that have >= 2 candidates and at least one label above 0.

    Queries with a single candidate rank trivially (always 1.0) and would only inflate the mean,
    so they are left out; None when no query qualifies (a pointwise data set).
    """
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for q, y, s in zip(queries, labels, scores):
        groups[q].append((float(s), float(y)))
    values = []
    for pairs in groups.values():
        if len(pairs) < 2:
            continue
        ideal = dcg(sorted((y for _, y in pairs), reverse=True)[:k])
        if ideal == 0:
            continue
        # Stable order on equal scores: the worse label first, so ties never look better than they are.
        ranked = sorted(pairs, key=lambda p: (-p[0], p[1]))
        values.append(dcg([y for _, y in ranked][:k]) / ideal)
    return float(np.mean(values)) if values else None


def relevance_metrics(
    labels: Sequence[int],
    scores: Sequence[float],
    p_positive: Sequence[float],
    queries: Sequence[str] | None = None,
    positive_label: int = POSITIVE_LABEL,
) -> Metrics:
    """Every metric at once. `scores` ranks (p1 + 2 p2 + 3 p3); `p_positive` is the model's
    P(label >= positive_label) (`p_at_least(probs, positive_label)`): accuracy and calibration use it."""
    labels = np.asarray(labels)
    if not (len(labels) == len(scores) == len(p_positive)):
        raise ValueError(f"lengths differ: {len(labels)} labels, {len(scores)} scores, {len(p_positive)} p_positive")
    positive = labels >= positive_label
    return Metrics(
        auc=auc(positive, scores),
        spearman=spearman(labels, scores),
        accuracy=binary_accuracy(positive, p_positive),
        ndcg=ndcg(queries, labels, scores) if queries is not None else None,
        n=int(len(labels)),
        ece=expected_calibration_error(positive, p_positive),
        brier=brier_score(positive, p_positive),
    )
