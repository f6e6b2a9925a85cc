"""The pre-training loop on the tiny preset: the loss goes down, and a resume is exact."""

import json

import pandas as pd
import pytest
import torch
from PIL import Image

from hcmrm.train.batching import PretrainExample
from hcmrm.model.checkpoint import load_model
from hcmrm.model.frames import encode_image
from hcmrm.config import from_dict
from hcmrm.train.pretrain import PretrainConfig, examples_from_records, pretrain
from hcmrm.train.loop import latest_checkpoint
from hcmrm.train.shards import ShardReadError, list_shards

COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
WORDS = ["红色", "绿色", "蓝色", "黄色", "紫色", "橙色", "白色", "黑色"]


def corpus():
    """Colour words as pseudo-queries, with a frame of that colour for half of them (ITC/ITM need frames)."""
    out = []
    for i, (color, word) in enumerate(zip(COLORS, WORDS)):
        frames = [encode_image(Image.new("RGB", (24, 24), color))] if i % 2 == 0 else None
        out.append(PretrainExample(word + "手机壳", f"新款{word}外壳 防摔 耐用", frames))
    return out


def config(steps, seed=0, model=None, **loop):
    return from_dict(PretrainConfig, {
        "preset": "tiny",
        "model": model or {},
        "loop": {"max_steps": steps, "batch_size": 4, "seed": seed, "log_every": 1,
                 "optim": {"lr": 3e-3, "warmup_steps": 2}, **loop},
    })


def test_loss_goes_down_and_every_term_is_logged(tmp_path):
    logged = []
    result = pretrain(corpus(), config(40), tmp_path, log_metrics=lambda m, s: logged.append((s, m)), progress=False)
    losses = result.loop.losses
    assert len(losses) == 40
    assert sum(losses[-8:]) / 8 < 0.8 * sum(losses[:8]) / 8
    assert {"train/loss", "train/itc", "train/itm", "train/mlm", "train/pqvm", "train/lr"} <= set(logged[0][1])
    assert [s for s, _ in logged] == list(range(1, 41))
    reloaded = load_model(result.model_dir)  # the saved model is a plain model folder
    assert torch.equal(reloaded.embeddings.word.weight, result.model.embeddings.word.weight)


class Crash(Exception):
    pass


@pytest.mark.parametrize("model", [{}, {"use_momentum": True, "queue_size": 8}], ids=["plain", "momentum+queue"])
def test_resume_gives_the_same_next_steps_as_an_uninterrupted_run(tmp_path, model):
    straight = pretrain(corpus(), config(6, model=model, checkpoint_every=2), tmp_path / "a", progress=False)

    def crash_after_step_3(metrics, step):
        if step == 3:
            raise Crash  # killed after step 3: the last checkpoint is the one of step 2
    with pytest.raises(Crash):
        pretrain(corpus(), config(6, model=model, checkpoint_every=2), tmp_path / "b", log_metrics=crash_after_step_3,
                 progress=False)
    assert latest_checkpoint(tmp_path / "b" / "checkpoints").name == "step-00000002"
    state = json.loads((latest_checkpoint(tmp_path / "b" / "checkpoints") / "train_state.json").read_text())
    assert state["position"] == {"step": 2, "epoch": 1, "batch": 0}

    torch.manual_seed(1234)  # whatever the global RNG holds now, the checkpoint's state wins
    resumed = pretrain(corpus(), config(6, model=model, checkpoint_every=2), tmp_path / "b", progress=False)
    assert resumed.loop.resumed_from == 2
    assert resumed.loop.losses == straight.loop.losses[2:]  # bit-identical steps 3..6
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    if model:  # the EMA model and the feature queue came back too
        assert (tmp_path / "b" / "checkpoints" / "step-00000006" / "extra.safetensors").exists()


def test_a_checkpoint_of_another_run_is_not_resumed(tmp_path):
    pretrain(corpus(), config(2), tmp_path, progress=False)
    with pytest.raises(ValueError, match="another run .*loop"):
        pretrain(corpus(), config(4), tmp_path, progress=False)  # other schedule length
    with pytest.raises(ValueError, match="n_examples"):
        pretrain(corpus()[:6], config(2), tmp_path, progress=False)  # other data
    assert pretrain(corpus(), config(4), tmp_path, progress=False, resume=False).loop.steps == 4


def test_pretrain_pairs_rows_become_examples():
    frame = pd.DataFrame({
        "pseudo_query": ["红色手机壳", None, "耳机"],
        "context_text": ["新款 外壳", "x", "蓝牙 降噪"],
        "frames": [[encode_image(Image.new("RGB", (8, 8), "red"))], None, []],
    })
    examples = examples_from_records(frame)
    assert [e.pseudo_query for e in examples] == ["红色手机壳", "耳机"]  # the row without a query is skipped
    assert len(examples[0].frames) == 1 and examples[1].frames == []
    with pytest.raises(ValueError, match="pseudo_query"):
        examples_from_records(pd.DataFrame({"query": ["q"]}))


def test_an_e5_model_pre_trains_from_its_base_with_its_own_tokenizer(tmp_path):
    # Two steps of the four objectives on the e5 tower (whole-word masking over e5's pieces); the saved folder
    # holds only what differs from the base and loads back to the same word embeddings.
    small = {"text": {"text_layers": 1, "fusion_layers": 1, "lora_rank": 2, "dropout": 0.0}}
    result = pretrain(corpus(), from_dict(PretrainConfig, {
        "preset": "e5small", "model": small,
        "loop": {"max_steps": 2, "batch_size": 4, "optim": {"lr": 1e-3, "warmup_steps": 1}}}), tmp_path, progress=False)
    assert len(result.loop.losses) == 2 and all(torch.isfinite(torch.tensor(result.loop.losses)))
    assert (result.model_dir / "tokenizer.json").exists()
    reloaded = load_model(result.model_dir)
    assert torch.equal(reloaded.embeddings.word.weight, result.model.embeddings.word.weight)
def write_shards(folder, copies=3):
    """The corpus as Parquet: `copies` files of one row group each, so two loader workers share the work."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir()
    rows = corpus()
    for i in range(copies):
        pq.write_table(pa.table({"pseudo_query": [e.pseudo_query for e in rows],
                                 "context_text": [e.context_text for e in rows],
                                 "frames": [e.frames for e in rows]}), folder / f"part-{i}.parquet")
    return list_shards([folder])


def streamed(steps, **loop):
    c = config(steps, **loop)
    c.stream.workers, c.stream.shuffle_buffer = 2, 6
    return c


def test_a_streamed_corpus_trains_and_resumes_exactly(tmp_path):
    shards = write_shards(tmp_path / "corpus")
    straight = pretrain(shards, streamed(8, checkpoint_every=3), tmp_path / "a", progress=False)
    assert len(straight.loop.losses) == 8 and all(torch.isfinite(torch.tensor(straight.loop.losses)))

    def crash_after_step_4(metrics, step):
        if step == 4:
            raise Crash  # the last checkpoint is step 3: mid-epoch, with the loader workers' buffers in flight
    with pytest.raises(Crash):
        pretrain(shards, streamed(8, checkpoint_every=3), tmp_path / "b", log_metrics=crash_after_step_4, progress=False)
    resumed = pretrain(shards, streamed(8, checkpoint_every=3), tmp_path / "b", progress=False)
    assert resumed.loop.resumed_from == 3
    assert resumed.loop.losses == straight.loop.losses[3:]
    with pytest.raises(ValueError, match="another run .*shards"):
        pretrain(shards[:2], streamed(8, checkpoint_every=3), tmp_path / "b", progress=False)


def test_a_streamed_row_without_a_pseudo_query_is_named_by_shard_and_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "corpus").mkdir()
    queries = [e.pseudo_query for e in corpus()]
    queries[5] = None
    pq.write_table(pa.table({"pseudo_query": queries, "context_text": [e.context_text for e in corpus()]}),
                   tmp_path / "corpus" / "part-0.parquet")
    c = streamed(2)
    c.stream.workers = 1
    with pytest.raises(ShardReadError, match=r"part-0.parquet row group 0, row 5: ValueError: no pseudo-query"):
        pretrain(list_shards([tmp_path / "corpus"]), c, None, progress=False)
