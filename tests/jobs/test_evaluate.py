"""`hcmrm evaluate`: a registered or local model on the public sets' file formats -> metrics JSON."""

import json
import re

import pandas as pd
import pytest
import torch

from hcmrm.tracking import registry
from hcmrm.tracking import store as tracking
from hcmrm.tracking.model_uri import ModelNotFoundError, champion_uri
from hcmrm.model.checkpoint import load_model, save_model
from hcmrm.model.network import build_model
from hcmrm.train.finetune import score_examples
from hcmrm.train.labeled_data import build_texts, read_labeled, to_examples
from hcmrm.train.metrics import p_at_least
from jobs import evaluate
from jobs.common import build_parser, run_command

ROWS = [  # QBQTC v0 style: `relevant` as a string, 3 levels, several titles per query
    {"query": "手机壳", "title": "新款手机壳 防摔", "relevant": "2"},
    {"query": "手机壳", "title": "耳机配件", "relevant": "0"},
    {"query": "手机壳", "title": "手机壳怎么选", "relevant": "1"},
    {"query": "跑鞋", "title": "跑鞋推荐", "relevant": "2"},
    {"query": "跑鞋", "title": "茶叶特价", "relevant": "0"},
    {"query": "跑鞋", "title": "", "relevant": "1"},  # rejected: empty title
]


@pytest.fixture
def model_dir(tmp_path):
    torch.manual_seed(0)
    save_model(build_model("tiny"), tmp_path / "model")
    return tmp_path / "model"


def run_evaluate(settings, capsys, *argv):
    common = ["--tracking-uri", settings.tracking_uri, "--artifact-root", settings.artifact_root,
              "--model-name", settings.model_name]
    args = build_parser(evaluate).parse_args([*argv, *common])
    assert evaluate.run(args) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out.strip().splitlines()[-1]), captured.err


def test_local_folder_on_json_array_and_json_lines(settings, capsys, tmp_path, model_dir):
    array = tmp_path / "dev.json"
    array.write_text(json.dumps(ROWS, ensure_ascii=False), encoding="utf-8")
    out, err = run_evaluate(settings, capsys, "--model", str(model_dir), "--data", str(array))
    assert set(out) == {"auc", "spearman", "accuracy", "ndcg", "n", "ece", "brier"}
    assert out["n"] == 5 and "1 rows rejected" in err
    assert "pairs scored" in err and "5/5" in err  # progress on stderr, stdout stays one JSON object
    assert 0 <= out["ece"] <= 1 and 0 <= out["brier"] <= 1
    assert 0 <= out["auc"] <= 1 and -1 <= out["spearman"] <= 1 and out["ndcg"] is not None

    lines = tmp_path / "dev.jsonl"
    lines.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS), encoding="utf-8")
    again, _ = run_evaluate(settings, capsys, "--model", str(model_dir), "--data", str(lines))
    assert again == out  # same rows, same numbers


def test_registered_model_by_alias_or_run_on_parquet(settings, capsys, tmp_path, model_dir):
    mlflow = tracking.configure(settings)
    tracking.use_experiment(settings, "evaluate-test")
    with mlflow.start_run() as run:
        source = registry.log_model_dir(model_dir)
    version = registry.register_version(settings, run.info.run_id, source)
    registry.set_alias(settings, version.version)
    parquet = tmp_path / "dev.parquet"
    pd.DataFrame([{"query": r["query"], "title": r["title"], "label": int(r["relevant"])} for r in ROWS]).to_parquet(parquet)
    by_alias, _ = run_evaluate(settings, capsys, "--model", champion_uri(settings.model_name), "--data", str(parquet))
    by_run, _ = run_evaluate(settings, capsys, "--model", f"runs:/{run.info.run_id}/model", "--data", str(parquet))
    local, _ = run_evaluate(settings, capsys, "--model", str(model_dir), "--data", str(parquet))
    assert by_alias == by_run == local and by_alias["n"] == 5


def test_positive_label_moves_the_auc_threshold(settings, capsys, tmp_path, model_dir):
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(ROWS, ensure_ascii=False), encoding="utf-8")
    two, _ = run_evaluate(settings, capsys, "--model", str(model_dir), "--data", str(path))
    one, _ = run_evaluate(settings, capsys, "--model", str(model_dir), "--data", str(path), "--positive-label", "1")
    assert two["spearman"] == one["spearman"] and two["n"] == one["n"]  # only the binary metrics move
    probs, _ = score_examples(load_model(model_dir), to_examples(build_texts(read_labeled(path).pairs)))
    labels = [int(r["relevant"]) for r in ROWS if r["title"]]
    for threshold, out in ((1, one), (2, two)):  # accuracy compares P(label >= threshold) with label >= threshold
        p = p_at_least(probs, threshold)
        assert out["accuracy"] == pytest.approx(sum((q >= 0.5) == (y >= threshold) for q, y in zip(p, labels)) / 5)
    with pytest.raises(ModelNotFoundError, match="no model folder"):
        run_evaluate(settings, capsys, "--model", str(tmp_path / "nope"), "--data", str(path))
    challenger = f"models:/{settings.model_name}@challenger"
    with pytest.raises(ModelNotFoundError, match=re.escape(f"{challenger} not found in the tracking store {settings.tracking_uri}")):
        run_evaluate(settings, capsys, "--model", challenger, "--data", str(path))


def test_outside_the_project_a_missing_registry_is_one_line_and_no_store_is_created(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a folder with no mlruns.db, no --tracking-uri: the default store is not there
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    data = tmp_path / "dev.json"
    data.write_text(json.dumps(ROWS, ensure_ascii=False), encoding="utf-8")
    args = build_parser(evaluate).parse_args(["--model", "models:/hcmrm@champion", "--data", str(data)])
    assert run_command(args, "evaluate") == 4  # ModelError
    line = capsys.readouterr().err.strip().splitlines()[-1]
    store = f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert line.startswith(f"hcmrm evaluate: model models:/hcmrm@champion not found in the tracking store {store}")
    assert "--tracking-uri" in line
    assert not (tmp_path / "mlruns.db").exists()
