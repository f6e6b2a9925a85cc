"""`hcmrm pretrain` on the tiny preset: a Parquet file or the lake's pretrain_pairs -> model + MLflow run."""

import io

import pandas as pd
import pytest
import torch
from PIL import Image

from hcmrm.tracking import store as tracking
from hcmrm.model.checkpoint import load_model
from jobs import pretrain as job
from jobs.common import build_parser
from jobs.corpus import delta_corpus, plain_corpus


def png(color) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(out, format="PNG")
    return out.getvalue()


PAIRS = pd.DataFrame({
    "video_id": ["v1", "v2", "v3", "v4", "v5", "v6"],
    "dt": ["2024-08-25"] * 3 + ["2024-09-01"] * 3,
    "pseudo_query": ["红色连衣裙", "拍照手机", "英语网课", "蓝牙耳机", "跑鞋", "茶叶"],
    "context_text": ["夏季新款 显瘦", "旗舰 夜景", "考研 名师", "降噪 长续航", "减震 轻便", "明前 龙井"],
    "frames": [[png("red")], [png("blue")], [], [png("white")], None, [png("green")]],
})


def run_job(settings, capsys, *argv):
    common = ["--tracking-uri", settings.tracking_uri, "--artifact-root", settings.artifact_root,
              "--lake", settings.lake, "--spark-profile", "test"]
    training = ["--preset", "tiny", "--batch-size", "3", "--threads", "1", "--log-every", "1", "--no-progress"]
    threads = torch.get_num_threads()
    try:
        assert job.run(build_parser(job).parse_args([*argv, *training, *common])) == 0
    finally:
        torch.set_num_threads(threads)
    return capsys.readouterr().out


def test_parquet_input_logs_params_losses_and_the_model(settings, capsys, tmp_path):
    path = tmp_path / "pairs.parquet"
    PAIRS.to_parquet(path)
    out = run_job(settings, capsys, "--input", str(path), "--steps", "4", "--weights", "pqvm=0.5",
                  "--out", str(tmp_path / "run"))
    assert "pre-trained model" in out
    client = tracking.configure(settings).MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("hcmrm-pretrain").experiment_id])
    assert run.data.params["weights.pqvm"] == "0.5" and run.data.params["data.pairs"] == "6"
    assert (run.data.params["data.shards"], run.data.params["device"]) == ("1", "cpu")
    for name in ("train/loss", "train/itc", "train/itm", "train/mlm", "train/pqvm"):
        assert len(client.get_metric_history(run.info.run_id, name)) == 4
    assert "model" in {a.path for a in client.list_artifacts(run.info.run_id)}
    load_model(tmp_path / "run" / "model")  # the folder `finetune --init` takes


def test_flags_override_the_training_yaml_key_by_key():
    from hcmrm.config import load
    from hcmrm.train.pretrain import PretrainConfig

    config = job.load_config(build_parser(job).parse_args(["--lr", "0.01", "--steps", "5", "--weights", "pqvm=0"]))
    file = load(PretrainConfig, job.CONF_FILE)
    assert (config.loop.optim.lr, config.loop.max_steps, config.weights.pqvm) == (0.01, 5, 0.0)
    assert config.loop.optim.warmup_steps == file.loop.optim.warmup_steps  # the rest of `optim` stays the file's
    assert (config.weights.itc, config.loop.batch_size, config.preset) == (file.weights.itc, file.loop.batch_size,
                                                                           file.preset)


def test_bad_weights_flag_is_refused(settings, capsys, tmp_path):
    with pytest.raises(SystemExit, match="--weights"):
        run_job(settings, capsys, "--input", "x.parquet", "--weights", "itx=1")


@pytest.mark.spark
def test_lake_table_and_date_filter(spark, settings, capsys, tmp_path):
    from jobs.tables import overwrite_table

    df = spark.createDataFrame(PAIRS.assign(frames=[f if f is not None else None for f in PAIRS["frames"]]))
    overwrite_table(df, settings.table("pretrain_pairs"), "dt")
    corpus = delta_corpus(spark, settings.table("pretrain_pairs"), ["2024-09-01"])
    assert corpus.version == 0 and corpus.rows == 3  # only that partition's files, listed by Delta
    assert all("dt=2024-09-01" in s.path for s in corpus.shards)
    out = run_job(settings, capsys, "--date", "2024-09-01", "--steps", "2", "--out", str(tmp_path / "run"))
    assert "pre-trained model" in out


@pytest.mark.spark
def test_a_table_with_rows_hidden_by_deletion_vectors_is_refused_until_purged(spark, settings):
    from hcmrm.errors import InputDataError
    from jobs.tables import overwrite_table

    path = settings.table("pretrain_pairs")
    overwrite_table(spark.createDataFrame(PAIRS.drop(columns=["frames"])), path, "dt")
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.enableDeletionVectors' = true)")
    spark.sql(f"DELETE FROM delta.`{path}` WHERE video_id = 'v2'")
    with pytest.raises(InputDataError, match="1 deleted rows are still in its files .* REORG TABLE"):
        delta_corpus(spark, path, None)
    spark.sql(f"REORG TABLE delta.`{path}` APPLY (PURGE)")
    assert delta_corpus(spark, path, None).rows == 5


def test_plain_files_take_no_date_filter(tmp_path):
    from hcmrm.errors import InputDataError

    PAIRS.to_parquet(tmp_path / "pairs.parquet")
    with pytest.raises(InputDataError, match="--date selects partitions of a Delta table"):
        plain_corpus(str(tmp_path / "pairs.parquet"), ["2024-08-25"])
