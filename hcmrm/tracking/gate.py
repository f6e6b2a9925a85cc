"""The registry gate: a new model version takes the `champion` alias only when it beats the champion.

`decide` is a pure function of two numbers; `apply_gate` gathers them from MLflow (the champion's
metric as recorded for the same evaluation data, or re-measured by a callback when it was
measured on other data), moves the alias when the decision says so, and records the decision on
the candidate's run and version either way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

from hcmrm.tracking import registry
from hcmrm.settings import Settings
from hcmrm.tracking.model_uri import version_uri
from hcmrm.tracking.store import configure

log = logging.getLogger(__name__)

GATE_METRICS = ("auc", "spearman", "accuracy", "ndcg")  # all higher-is-better
METRIC_TAG = "metric."  # model-version tag prefix holding the version's evaluation metrics
DATA_TAG = "eval_data"  # model-version tag: fingerprint of the data those metrics were measured on


@dataclass(frozen=True)
class GateDecision:
    promote: bool  # True: the candidate takes the champion alias
    reason: str  # one sentence, logged and stored with the run
    metric: str  # the metric compared
    candidate_version: str  # the registered version under test
    candidate_value: float | None  # its metric
    champion_version: str | None  # the champion at decision time (None: there was none)
    champion_value: float | None  # the champion's metric on the same data (None: unknown)
    min_delta: float = 0.0  # the candidate must exceed the champion by more than this


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def decide(
    metric: str,
    candidate_value: float | None,
    champion_value: float | None,
    candidate_version: str = "",
    champion_version: str | None = None,
    min_delta: float = 0.0,
) -> GateDecision:
    """Promote iff there is no champion, or the candidate's metric beats the champion's by > min_delta."""
    if metric not in GATE_METRICS:
        raise ValueError(f"gate metric must be one of {GATE_METRICS}, got {metric!r}")

    def verdict(promote: bool, reason: str) -> GateDecision:
        return GateDecision(
            promote, reason, metric, str(candidate_version), candidate_value, champion_version, champion_value, min_delta
        )

    if _missing(candidate_value):
        return verdict(False, f"candidate has no {metric}: refused")
    if champion_version is None:
        return verdict(True, f"no champion yet: candidate takes it with {metric}={candidate_value:.4f}")
    if _missing(champion_value):
        return verdict(False, f"champion v{champion_version} has no comparable {metric}: refused, promote by hand")
    if candidate_value > champion_value + min_delta:
        return verdict(
            True, f"{metric} {candidate_value:.4f} beats champion v{champion_version}'s {champion_value:.4f}"
        )
    return verdict(
        False,
        f"{metric} {candidate_value:.4f} does not beat champion v{champion_version}'s {champion_value:.4f}"
        + (f" by more than {min_delta}" if min_delta else ""),
    )


def record_version_metrics(settings: Settings, version: str, metrics: dict, data_fingerprint: str) -> None:
    """Attach evaluation metrics to a model version (tags), so later gates compare like with like."""
    client = configure(settings).MlflowClient()
    for name, value in metrics.items():
        if name in GATE_METRICS and not _missing(value):
            client.set_model_version_tag(settings.model_name, str(version), METRIC_TAG + name, f"{float(value):.6f}")
    client.set_model_version_tag(settings.model_name, str(version), DATA_TAG, data_fingerprint)


def champion_metric(version, metric: str, data_fingerprint: str) -> float | None:
    """The champion's recorded metric, if it was measured on the same data; else None."""
    tags = version.tags or {}
    if tags.get(DATA_TAG) != data_fingerprint or METRIC_TAG + metric not in tags:
        return None
    return float(tags[METRIC_TAG + metric])


def apply_gate(
    settings: Settings,
    candidate_version: str,
    candidate_metrics: dict,
    metric: str = "auc",
    data_fingerprint: str = "",
    evaluate_champion: Callable[[str], dict] | None = None,
    min_delta: float = 0.0,
) -> GateDecision:
    """Decide, move `champion` when the candidate wins, and log the decision on the candidate's run.

    `evaluate_champion(model_uri)` re-measures the champion on the candidate's evaluation data
    when its recorded metrics come from other data (or are missing); it should score through the
    production engine, as the candidate's metrics were (hcmrm.train.finetune.evaluate).
    """
    champion = registry.current_champion(settings)
    champion_value = None
    if champion is not None and str(champion.version) != str(candidate_version):
        champion_value = champion_metric(champion, metric, data_fingerprint)
        if champion_value is None and evaluate_champion is not None:
            uri = version_uri(settings.model_name, champion.version)
            log.info("champion v%s has no %s on this data: re-evaluating %s", champion.version, metric, uri)
            champion_value = evaluate_champion(uri).get(metric)
    decision = decide(
        metric,
        candidate_metrics.get(metric),
        champion_value,
        candidate_version=str(candidate_version),
        champion_version=None if champion is None else str(champion.version),
        min_delta=min_delta,
    )
    if decision.promote:
        registry.set_alias(settings, candidate_version)
    _log_decision(settings, decision)
    log.info("gate: %s -> %s", decision.reason, "PROMOTED" if decision.promote else "kept champion")
    return decision


def _log_decision(settings: Settings, decision: GateDecision) -> None:
    client = configure(settings).MlflowClient()
    version = client.get_model_version(settings.model_name, decision.candidate_version)
    verdict = "promoted" if decision.promote else "refused"
    client.set_model_version_tag(settings.model_name, decision.candidate_version, "gate", verdict)
    client.set_model_version_tag(settings.model_name, decision.candidate_version, "gate.reason", decision.reason)
    if version.run_id:
        client.set_tag(version.run_id, "gate", verdict)
        client.set_tag(version.run_id, "gate.reason", decision.reason)
        client.log_dict(version.run_id, asdict(decision), "gate_decision.json")
