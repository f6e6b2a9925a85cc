"""The irrelevant-ad rate with 95% intervals, from the model's labels and a human audit of a sample.

"Model irrelevant" is what `hcmrm irrelevant-rate` has always counted: the argmax label is Bad or Less
(label <= hcmrm.labels.IRRELEVANT_MAX_LABEL); "audited irrelevant" is a rater's label on the same scale.

Two estimates of the true rate of a day (or of one dimension value of it):
- audit only: the audited irrelevant share of the n audited pairs, with Wilson's score interval;
- prediction-powered (Angelopoulos et al., "Prediction-powered inference", Science 2023): the model's
  rate over all N pairs plus the mean of (audited irrelevant - model irrelevant) over the audited pairs.
  The second term corrects the model's bias; its normal-approximation interval adds the two variances,
  r(1 - r) / N for the model's rate and var(audited - model) / n for the correction, so it is narrower
  than the audit-only interval whenever the model and the raters disagree on few pairs.

Everything takes counts (sufficient statistics), so Spark sums them per group and any rollup of groups
is exact. Inputs broadcast like numpy arrays; a group with too few audited pairs gets NaN
(Wilson's interval holds for any n >= 1; the prediction-powered one needs MIN_AUDITED).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

LEVEL = 0.95  # the intervals' coverage
# The fewest audited pairs a prediction-powered interval is given for: its normal approximation needs the
# sample variance of (audited - model), which a handful of pairs gets badly wrong (3 pairs that all
# disagree have variance 0, so the interval would shrink to a point).
MIN_AUDITED = 10


def z_value(level: float = LEVEL) -> float:
    """The two-sided normal quantile of `level` (1.96 for 95%)."""
    return float(norm.ppf(0.5 + level / 2))


@dataclass(frozen=True)
class Interval:
    estimate: np.ndarray  # the point estimate of the rate
    low: np.ndarray  # the interval's bounds, clipped to [0, 1]
    high: np.ndarray


def wilson(irrelevant, n, level: float = LEVEL) -> Interval:
    """The audited rate irrelevant / n with Wilson's score interval; NaN where n == 0."""
    k, n = np.asarray(irrelevant, dtype=float), np.asarray(n, dtype=float)
    z = z_value(level)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Interval(p, np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1))


def prediction_powered(pairs, model_irrelevant, audited, audited_irrelevant, audited_model_irrelevant,
                       disagreements, level: float = LEVEL, min_audited: int = MIN_AUDITED) -> Interval:
    """The prediction-powered rate and its normal-approximation interval, from counts:

    pairs, model_irrelevant: all N pairs of the group and those the model labels irrelevant;
    audited, audited_irrelevant, audited_model_irrelevant: the n audited pairs, those the raters call
    irrelevant and those the model does; disagreements: audited pairs where the two differ
    (the sum of (audited - model)^2, as both are 0/1). NaN where n < min_audited.
    """
    big_n, m = np.asarray(pairs, dtype=float), np.asarray(model_irrelevant, dtype=float)
    n = np.asarray(audited, dtype=float)
    y, f, d2 = (np.asarray(v, dtype=float) for v in (audited_irrelevant, audited_model_irrelevant, disagreements))
    with np.errstate(invalid="ignore", divide="ignore"):
        model_rate = m / big_n
        correction = (y - f) / n
        var_model = model_rate * (1 - model_rate) / big_n
        var_correction = (d2 - n * correction**2) / (n - 1)  # the sample variance of (audited - model)
        estimate = np.where(n >= max(min_audited, 2), model_rate + correction, np.nan)
        half = z_value(level) * np.sqrt(np.maximum(var_model, 0) + np.maximum(var_correction, 0) / n)
    # a rate outside [0, 1] is impossible: the estimate and its bounds are clipped to it (coverage is unchanged)
    return Interval(np.clip(estimate, 0, 1), np.clip(estimate - half, 0, 1), np.clip(estimate + half, 0, 1))
