"""`hcmrm calibrate`: fit the temperature on a dev file, write a model folder that evaluate and the registry take."""

import json

import pytest
import torch

from hcmrm.model.checkpoint import load_model, save_model
from hcmrm.model.network import build_model
from hcmrm.tracking import registry
from hcmrm.train.batching import LabeledExample
from hcmrm.train.calibration import T_RANGE, relevance_logit
from hcmrm.train.finetune import score_examples
from jobs import calibrate, evaluate, register_model
from jobs.common import build_parser

QUERIES = ["手机壳", "跑鞋", "口红", "茶叶"]
TITLES = ["新款手机壳 防摔", "夏季透气跑步鞋", "保湿口红 正红色",
          "明前龙井茶叶", "保温杯 大容量", "儿童积木玩具"]


def confident_model():
    """A tiny model whose relevance logit r spreads over several units around 0 on the dev pairs (at
    initialisation it is nearly constant), so a temperature has something to fit."""
    torch.manual_seed(0)
    model = build_model("tiny")
    raw = relevance_logit(score_examples(model, examples(dev_pairs()))[0])
    scale = 3.0 / raw.std()
    with torch.no_grad():  # r -> scale * (r - mean r)
        model.relevance_head.weight[0] *= scale
        model.relevance_head.bias[0] = scale * (model.relevance_head.bias[0] - raw.mean())
    return model


def dev_pairs():
    return [{"query": q, "title": t} for q in QUERIES for t in TITLES]


def examples(rows):
    return [LabeledExample(r["query"], r["title"], None, r.get("label", 0)) for r in rows]


def dev_rows(model):
    """Every query against every title, labelled by the model's own order of P(label >= 2) (top half 3, the
    rest 0), with the two extremes swapped: informative but not separable, so the best temperature is finite."""
    rows = dev_pairs()
    probs, _ = score_examples(model, examples(rows))
    order = relevance_logit(probs).argsort()
    labels = [0] * len(rows)
    for i in order[len(rows) // 2:]:
        labels[i] = 3
    labels[order[0]], labels[order[-1]] = 3, 0
    return [{**r, "label": y} for r, y in zip(rows, labels)]


def run_job(module, settings, capsys, *argv):
    common = ["--tracking-uri", settings.tracking_uri, "--artifact-root", settings.artifact_root,
              "--model-name", settings.model_name, "--lake", settings.lake]
    assert module.run(build_parser(module).parse_args([*argv, *common])) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_the_calibrated_folder_scores_as_reported_and_registers(settings, capsys, tmp_path):
    model = confident_model()
    save_model(model, tmp_path / "model")
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps(dev_rows(model), ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "calibrated"
    report = run_job(calibrate, settings, capsys, "--model", str(tmp_path / "model"), "--data", str(dev),
                     "--out", str(out), "--no-progress")
    assert report["n"] == 24 and report["out"] == str(out)
    assert T_RANGE[0] < report["temperature"] < T_RANGE[1]
    assert report["after"]["nll"] < report["before"]["nll"]
    model = load_model(out)
    assert model.config.relevance_temperature == pytest.approx(report["temperature"], rel=1e-5)
    assert json.loads((out / calibrate.REPORT).read_text())["temperature"] == report["temperature"]

    measured = run_job(evaluate, settings, capsys, "--model", str(out), "--data", str(dev), "--no-progress")
    assert measured["ece"] == pytest.approx(report["after"]["ece"], abs=1e-5)  # the folder outputs what was fitted
    assert measured["brier"] == pytest.approx(report["after"]["brier"], abs=1e-5)

    again = run_job(calibrate, settings, capsys, "--model", str(out), "--data", str(dev), "--no-progress")
    assert again["temperature"] == pytest.approx(report["temperature"], rel=1e-3)  # refitting finds it calibrated

    register_model.run(build_parser(register_model).parse_args(
        ["--path", str(out), "--tracking-uri", settings.tracking_uri, "--artifact-root", settings.artifact_root,
         "--model-name", settings.model_name]))
    assert registry.current_champion(settings).version == 1
