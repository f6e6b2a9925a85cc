"""`hcmrm pretrain --num-processes 2` submitted to the local standalone cluster: TorchDistributor runs one
rank per barrier task (local_mode=False), each streaming its own shard of the corpus from the files, and
the run ends with one model folder and one MLflow run."""

from __future__ import annotations

import subprocess

import pytest

from hcmrm.model.checkpoint import load_model
from hcmrm.tracking import store as tracking
from tests.jobs.test_pretrain import PAIRS
from tests.jobs.test_score_cluster import REPO, cluster, submit_options  # noqa: F401  (cluster: the fixture)

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_two_ranks_on_the_cluster_stream_their_shards_and_write_one_model_and_one_run(cluster, settings, tmp_path):  # noqa: F811
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for part in range(2):  # one shard per rank
        PAIRS.to_parquet(corpus / f"part-{part}.parquet")
    command = [str(REPO / "bin" / "spark-submit-local"), "jobs/pretrain.py", "--input", str(corpus),
               "--num-processes", "2", "--spark-profile", "cluster", "--device", "cpu", "--preset", "tiny",
               "--steps", "2", "--batch-size", "4", "--threads", "1", "--log-every", "1", "--no-progress",
               "--out", str(tmp_path / "run"), "--lake", settings.lake, "--tracking-uri", settings.tracking_uri,
               "--artifact-root", settings.artifact_root]
    done = subprocess.run(command, **submit_options(cluster), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pre-trained model" in done.stdout

    client = tracking.configure(settings).MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("hcmrm-pretrain").experiment_id])
    assert (run.data.params["processes"], run.data.params["data.shards"], run.info.status) == ("2", "2", "FINISHED")
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2]
    load_model(tmp_path / "run" / "model")
    assert [p.name for p in (tmp_path / "run").iterdir() if p.name != "checkpoints"] == ["model"]
