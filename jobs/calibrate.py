"""calibrate: fit a model's temperature on a labeled dev file -> a calibrated model folder + JSON.

    hcmrm calibrate --model hcmrm/models/kuake-small-match --data KUAKE-QTR_dev.json --out runs/calibrated
    hcmrm register-model --path runs/calibrated          # then it is a model version like any other

The irrelevant rate is read off the model's P(label >= 2), so that probability should mean what it
says. This fits one scalar T on the relevance logit (hcmrm.train.calibration: P(label >= 2) =
sigmoid(r / T), T minimising the NLL of label >= --positive-label on --data), and writes --out:
the same weights with `relevance_temperature` set in config.json, plus calibration.json (what it
was fitted on, before and after). Prints one JSON object: temperature, and ece, brier, nll, auc,
spearman before and after on --data. Measure it on another set with `hcmrm evaluate` before you
ship it: a temperature fitted on one domain can make another worse (docs/training.md, Calibration).
--model and --data take what `hcmrm evaluate` takes; --positive-label names the labels of the data that
mean the model's Good or Excellent (2 on KUAKE-QTR's 0..3 and on QBQTC's 0..2). A model calibrated
before is refitted from its current temperature.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jobs.common import script_main
from jobs.evaluate import add_arguments as add_evaluate_arguments
from jobs.evaluate import model_and_examples, scoring_progress

COMMAND = "calibrate"
HELP = "fit a temperature for P(label >= 2) on a labeled dev file; write the calibrated model folder"
REPORT = "calibration.json"  # beside the calibrated model's config.json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_evaluate_arguments(parser)
    parser.add_argument("--out", type=Path, help="write the calibrated model folder here (without: only measure)")


def run(args: argparse.Namespace) -> int:
    from hcmrm.train.calibration import fit_temperature, relevance_logit, with_temperature
    from hcmrm.train.finetune import score_examples

    model, examples = model_and_examples(args)
    with scoring_progress(len(examples), not args.no_progress) as progress:
        probs, _ = score_examples(model, examples, args.batch_size, progress)
    labels = [e.label for e in examples]
    positive = [y >= args.positive_label for y in labels]
    fit = fit_temperature(positive, relevance_logit(probs))
    temperature = model.config.relevance_temperature * fit.temperature  # the probs already carry the old one
    before = _measure(labels, probs, [e.query for e in examples], args.positive_label, fit.nll_before)
    after = _measure(labels, with_temperature(probs, fit.temperature), [e.query for e in examples],
                     args.positive_label, fit.nll_after)
    report = {"temperature": round(temperature, 6), "fitted_on": str(args.data), "n": fit.n,
              "positive_label": args.positive_label, "before": before, "after": after}
    if args.out:
        _write_model(model, temperature, args.out)
        (args.out / REPORT).write_text(json.dumps({"model": str(args.model), **report}, indent=2), encoding="utf-8")
        report["out"] = str(args.out)
    print(json.dumps(report))
    return 0


def _measure(labels, probs, queries, positive_label: int, nll: float) -> dict:
    from hcmrm.labels import POSITIVE_LABEL, SCORE_WEIGHTS
    from hcmrm.train.metrics import p_at_least, relevance_metrics

    # The temperature calibrates the model's P(label >= 2); --positive-label says which labels of the data match it.
    metrics = relevance_metrics(labels, probs @ SCORE_WEIGHTS, p_at_least(probs, POSITIVE_LABEL), queries,
                                positive_label).as_dict()
    keep = ("ece", "brier", "auc", "spearman", "accuracy")
    return {"nll": round(nll, 6), **{k: None if metrics[k] is None else round(metrics[k], 6) for k in keep}}


def _write_model(model, temperature: float, out: Path) -> None:
    """The same weights under a config whose relevance_temperature is `temperature`."""
    import dataclasses

    from hcmrm.model.checkpoint import save_model
    from hcmrm.model.network import HCMRM

    calibrated = HCMRM(dataclasses.replace(model.config, relevance_temperature=temperature))
    calibrated.load_state_dict(model.state_dict())
    save_model(calibrated.eval(), out)


if __name__ == "__main__":
    script_main(sys.modules[__name__])
