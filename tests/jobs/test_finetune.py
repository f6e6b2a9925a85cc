"""`hcmrm finetune` end to end on the tiny preset: train, evaluate, register, gate; and its Spark inputs."""

import json

import pytest
import torch

from hcmrm.tracking import registry

from hcmrm.tracking import store as tracking
from jobs import finetune as job
from jobs.common import build_parser

PRODUCTS = ["手机壳", "耳机", "跑鞋", "茶叶"]


def rows(split=None):
    out = []
    for i, p in enumerate(PRODUCTS):
        other = PRODUCTS[(i + 1) % 4]
        out += [{"query": p, "title": f"新款{p} 包邮", "label": "3"}, {"query": p, "title": f"{other}配件", "label": "0"},
                {"query": p, "title": f"{p}怎么选", "label": 2}, {"query": p, "title": f"{other} 特价", "label": 1}]
    return [dict(r, split=split) for r in out] if split else out


def write_jsonl(path, items):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in items) + "\n", encoding="utf-8")
    return str(path)


def run_job(settings, capsys, tmp_path, *argv):
    common = ["--tracking-uri", settings.tracking_uri, "--artifact-root", settings.artifact_root,
              "--model-name", settings.model_name, "--lake", settings.lake, "--spark-profile", "test"]
    training = ["--preset", "tiny", "--steps", "4", "--batch-size", "4", "--threads", "1", "--log-every", "1", "--no-progress"]
    args = build_parser(job).parse_args([*argv, *training, *common])
    assert job.run(args) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_flags_override_the_training_yaml_and_unset_ones_keep_it():
    from hcmrm.config import load
    from hcmrm.train.finetune import FinetuneConfig

    config = job.load_config(build_parser(job).parse_args(["--loss", "bce", "--gate-metric", "ndcg", "--epochs", "1"]))
    file = load(FinetuneConfig, job.CONF_FILE)
    assert (config.loss, config.gate_metric, config.loop.epochs) == ("bce", "ndcg", 1)
    assert (config.loop.optim, config.preset, config.eval_batch_size) == (file.loop.optim, file.preset,
                                                                          file.eval_batch_size)


def test_registers_the_first_model_and_refuses_one_that_is_no_better(settings, capsys, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", rows() + [{"query": "q", "title": "t", "label": "9"}])
    dev = write_jsonl(tmp_path / "dev.jsonl", rows())
    first = run_job(settings, capsys, tmp_path, "--train", train, "--dev", dev, "--out", str(tmp_path / "r1"))
    assert first["model_version"] == "1" and first["gate"]["promote"] and first["rejected"] == 1
    assert set(first["metrics"]) == {"auc", "spearman", "accuracy", "ndcg", "n", "ece", "brier"}

    client = tracking.configure(settings).MlflowClient()
    run = client.get_run(first["run_id"])
    assert run.data.params["loss"] == "hierarchical_softmax" and run.data.params["data.train_pairs"] == "16"
    assert [m.step for m in client.get_metric_history(first["run_id"], "train/loss")] == [1, 2, 3, 4]
    assert "final_auc" in run.data.metrics
    assert {a.path for a in client.list_artifacts(first["run_id"])} >= {"model", "rejects.json", "gate_decision.json"}
    version = client.get_model_version(settings.model_name, "1")
    assert float(version.tags["metric.auc"]) == pytest.approx(first["metrics"]["auc"], abs=1e-6)

    # The same data, seed and steps give the same AUC: a tie is not a win, so champion stays at v1.
    second = run_job(settings, capsys, tmp_path, "--train", train, "--dev", dev, "--out", str(tmp_path / "r2"))
    assert second["model_version"] == "2" and not second["gate"]["promote"]
    assert str(registry.current_champion(settings).version) == "1"
    assert client.get_model_version(settings.model_name, "2").tags["gate"] == "refused"


def test_bce_from_a_pretrained_folder_without_registering(settings, capsys, tmp_path):
    from hcmrm.model.checkpoint import save_model
    from hcmrm.model.network import build_model

    save_model(build_model("tiny"), tmp_path / "pretrained")
    data = write_jsonl(tmp_path / "all.jsonl", rows("train") + rows("dev"))
    out = run_job(settings, capsys, tmp_path, "--train", data, "--loss", "bce", "--init", str(tmp_path / "pretrained"),
                  "--no-register", "--out", str(tmp_path / "r"))
    assert out["model_version"] is None and out["metrics"]["n"] == 16  # the dev split of the same file


@pytest.mark.spark
def test_lake_labeled_pairs_by_split(spark, settings, capsys, tmp_path):
    from jobs.tables import overwrite_table

    df = spark.createDataFrame([(r["query"], r["title"], int(r["label"]), r["split"])
                                for r in rows("train") + rows("dev")], "query string, title string, label int, split string")
    overwrite_table(df, settings.table("labeled_pairs"))
    out = run_job(settings, capsys, tmp_path, "--out", str(tmp_path / "r"))
    assert out["metrics"]["n"] == 16 and out["gate"]["promote"]
    run = tracking.configure(settings).MlflowClient().get_run(out["run_id"])
    assert run.data.params["data.train_pairs"] == "16"  # streamed from the staged files under --out/input
    assert (tmp_path / "r" / "input" / "00" / "status=accepted").is_dir()


@pytest.mark.spark
@pytest.mark.slow
def test_two_processes_through_torch_distributor(spark, settings, capsys, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", rows())
    out = run_job(settings, capsys, tmp_path, "--train", train, "--dev", train, "--num-processes", "2",
                  "--out", str(tmp_path / "r"))
    assert out["model_version"] == "1" and out["metrics"]["n"] == 16
    run = tracking.configure(settings).MlflowClient().get_run(out["run_id"])
    assert run.data.params["processes"] == "2"
