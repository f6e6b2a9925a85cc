"""Temperature scaling of P(label >= 2): the probability the irrelevant rate is built on.

The relevance head's first logit r decides relevant vs irrelevant, P(label >= 2) = sigmoid(r) (the
BCE head's only logit too). One scalar T, r -> r / T, is fitted on a labeled dev set by minimising
the binary negative log-likelihood of (label >= positive_label): Guo et al. 2017's temperature
scaling, on the one logit the rates read. T > 1 softens over-confident probabilities, T < 1
sharpens timid ones; P(label >= 2) keeps its order, so its AUC cannot move. The split inside each
side (Good vs Excellent, Bad vs Less) is left as trained.

    probs, _ = score_examples(model, dev)                       # hcmrm.train.finetune
    fit = fit_temperature(labels >= 2, relevance_logit(probs))   # T for logits as the model gives them
    calibrated = with_temperature(probs, fit.temperature)        # what a model with that T would output
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_expit

from hcmrm.labels import POSITIVE_LABEL

T_RANGE = (0.05, 20.0)  # the search interval of the temperature (log-uniform)


@dataclass(frozen=True)
class TemperatureFit:
    temperature: float  # divide the relevance logit r by this
    nll_before: float  # mean binary NLL at T = 1 (the logits as given)
    nll_after: float  # at the fitted T
    n: int  # pairs fitted on


def relevance_logit(probs) -> np.ndarray:
    """[N, 4] grade probabilities -> [N] r = log P(label >= 2) - log P(label < 2), in float64.

    Each side is a sum of probabilities the head computed from log-sigmoids, so a small side keeps
    its relative precision and r is exact to float32 rounding even where P is within 1e-7 of 1.
    """
    probs = np.asarray(probs, dtype=np.float64)
    tiny = np.finfo(np.float64).tiny
    positive = probs[:, POSITIVE_LABEL:].sum(axis=1)
    negative = probs[:, :POSITIVE_LABEL].sum(axis=1)
    return np.log(np.maximum(positive, tiny)) - np.log(np.maximum(negative, tiny))


def binary_nll(positive: Sequence[bool], logit: np.ndarray, temperature: float = 1.0) -> float:
    """Mean -log P(observed side) with P(label >= 2) = sigmoid(logit / temperature)."""
    positive = np.asarray(positive, dtype=bool)
    z = np.asarray(logit, dtype=np.float64) / temperature
    return float(-np.where(positive, log_expit(z), log_expit(-z)).mean())


def fit_temperature(positive: Sequence[bool], logit: np.ndarray) -> TemperatureFit:
    """The T in T_RANGE minimising the binary NLL (a 1-D bounded search over log T)."""
    positive = np.asarray(positive, dtype=bool)
    if len(positive) == 0 or positive.all() or not positive.any():
        raise ValueError("fitting a temperature needs both relevant and irrelevant pairs")
    low, high = (math.log(t) for t in T_RANGE)
    best = minimize_scalar(lambda log_t: binary_nll(positive, logit, math.exp(log_t)), bounds=(low, high),
                           method="bounded", options={"xatol": 1e-5})
    temperature = float(math.exp(best.x))
    return TemperatureFit(temperature, binary_nll(positive, logit), binary_nll(positive, logit, temperature),
                          len(positive))


def with_temperature(probs, temperature: float) -> np.ndarray:
    """The grade probabilities a model would give with its relevance logit divided by `temperature`:
    P(label >= 2) becomes sigmoid(r / T), each side keeps its inner split (float64)."""
    probs = np.asarray(probs, dtype=np.float64)
    tiny = np.finfo(np.float64).tiny
    r = relevance_logit(probs) / temperature
    out = probs.copy()
    positive = np.maximum(probs[:, POSITIVE_LABEL:].sum(axis=1, keepdims=True), tiny)
    negative = np.maximum(probs[:, :POSITIVE_LABEL].sum(axis=1, keepdims=True), tiny)
    out[:, POSITIVE_LABEL:] *= expit(r)[:, None] / positive
    out[:, :POSITIVE_LABEL] *= expit(-r)[:, None] / negative
    return out
