"""Two CPU processes (gloo) fine-tune together: DDP averages the gradients, so both end with the same
weights, equal to one process training on the whole batch."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from hcmrm.config import from_dict
from hcmrm.train.batching import LabeledExample
from hcmrm.train.distributed import DistInfo, from_env
from hcmrm.train.finetune import FinetuneConfig, finetune

PRODUCTS = ["手机壳", "耳机", "跑鞋", "茶叶"]


def pairs():
    return [LabeledExample(p, f"新款{p}" if k % 2 else f"{PRODUCTS[(i + 1) % 4]}配件", None, 3 * (k % 2))
            for i, p in enumerate(PRODUCTS) for k in range(4)]


def config():
    # dropout 0 (tiny preset): the only randomness is the data order, shared by both processes
    loop = {"max_steps": 3, "batch_size": 8, "optim": {"lr": 1e-2, "warmup_steps": 1}}
    return from_dict(FinetuneConfig, {"preset": "tiny", "loop": loop})


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from hcmrm.train import distributed

    info = distributed.init()  # CPU: gloo
    try:
        result = finetune(pairs(), None, config(), None, progress=False, dist=info)
        save_file({k: v.contiguous() for k, v in result.model.state_dict().items()}, f"{out_dir}/rank{rank}.safetensors")
    finally:
        distributed.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_train_like_one_with_the_whole_batch(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    rank0 = load_file(str(tmp_path / "rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "rank1.safetensors"))
    torch.set_num_threads(1)
    alone = finetune(pairs(), None, config(), None, progress=False).model.state_dict()
    moved = 0
    for name, weight in alone.items():
        assert torch.equal(rank0[name], rank1[name]), name  # the processes agree exactly
        torch.testing.assert_close(rank0[name], weight, rtol=1e-4, atol=1e-5)  # and match one process
        moved += not name.startswith("heads.")
    assert moved > 0


def test_from_env_reads_the_launchers_variables(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert from_env() == DistInfo(rank=1, world_size=4, local_rank=1)
    assert not from_env().is_main and from_env().enabled


def test_batch_must_divide_over_processes():
    with pytest.raises(ValueError, match="must divide"):
        finetune(pairs(), None, config(), None, progress=False, dist=DistInfo(rank=0, world_size=3))


def test_the_device_is_the_local_ranks_gpu_when_cuda_is_there_and_the_cpu_otherwise(monkeypatch):
    from hcmrm.train.distributed import pick_device

    info = DistInfo(rank=3, world_size=4, local_rank=1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("auto", info) == torch.device("cuda", 1)
    assert pick_device("cuda", info) == torch.device("cuda", 1)
    assert pick_device("cpu", info) == torch.device("cpu")
    with pytest.raises(RuntimeError, match="LOCAL_RANK 2 but only 2"):
        pick_device("auto", DistInfo(rank=2, world_size=3, local_rank=2))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto", info) == torch.device("cpu")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        pick_device("cuda", info)
    with pytest.raises(ValueError, match="one of auto, cpu, cuda"):
        pick_device("tpu", info)
