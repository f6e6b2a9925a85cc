"""`make bench-train-gpu`'s script trains through the project's loop without Spark; here on CPU with the tiny
preset (a smoke test)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_train_gpu_runs_on_cpu_without_pyspark():
    cmd = [sys.executable, str(REPO / "benchmarks" / "train_gpu.py"), "--device", "cpu", "--preset", "tiny",
           "--pretrain-batch", "4", "6", "--finetune-batch", "4", "--compare-batch", "4", "--warmup", "1",
           "--steps", "1", "--rounds", "1", "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["pyspark_loaded"] is False and report["device"] == "cpu" and report["dtype"] == "fp32"
    assert report["peak_tflops"] > 0
    for phase, sizes in (("pretrain", [4, 6]), ("finetune", [4])):
        cells = report[phase]["cells"]
        assert [c["batch"] for c in cells] == sizes
        for cell in cells:
            assert math.isfinite(cell["samples_per_s"]) and cell["samples_per_s"] > 0
            assert cell["gflop_per_step"] > 0 and 0 < cell["mfu"] < 1 and cell["peak_memory_mib"] > 0
        check = report[phase]["loss_check"]
        assert math.isfinite(check["loss_device"]) and check["loss_device"] > 0
        assert check["rel_diff"] < 1e-4  # both steps fp32 on the CPU: same weights, same batch, same loss
    pretrain = report["pretrain"]["cells"]
    assert pretrain[1]["gflop_per_step"] > pretrain[0]["gflop_per_step"]  # counted on the batch that ran
    assert all(report["pretrain"]["loss_check"][f"{term}_cpu_fp32"] > 0 for term in ("itc", "itm", "mlm", "pqvm"))
