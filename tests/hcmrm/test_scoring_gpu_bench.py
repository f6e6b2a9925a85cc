"""`make bench-gpu`'s script runs the Spark-free engine; here on CPU with the tiny preset (a smoke test)."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_gpu_runs_on_cpu_without_pyspark():
    cmd = [sys.executable, str(REPO / "benchmarks" / "engine_gpu.py"), "--device", "cpu", "--preset", "tiny",
           "--ads", "3", "--queries-per-ad", "4", "--rounds", "1", "--frames", "1", "2", "--frames-per-chunk", "2",
           "--prepare-threads", "0", "2", "--frame-decode", "host", "device"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["pyspark_loaded"] is False and report["device"] == "cpu"
    cells = {(c["text_len"], c["frames"], c["mode"]): c for c in report["cells"]}
    assert set(cells) == {(24, f, m) for f in (1, 2) for m in ("full", "cached")}  # tiny caps the text at 24
    for (text_len, frames, mode), cell in cells.items():
        # in line and on 2 prepare threads, JPEGs decoded by PIL and by torchvision on the device (here the CPU)
        settings = {"0/host", "2/host", "0/device", "2/device"}
        assert set(cell["pairs_per_s"]) == set(cell["mfu"]) == settings
        assert all(rate > 0 for rate in cell["pairs_per_s"].values()) and cell["prepare_only_pairs_per_s"] > 0
        assert all(0 < mfu < 1 for mfu in cell["mfu"].values())
        assert set(cell["over_0/host"]) == settings - {"0/host"}
        waits = cell["device_waits_on_host"]
        assert 0 < waits["0/host"] <= 1 and 0 <= waits["2/host"] <= 1  # in line, the device always waits
        if mode == "cached":
            assert cell["gflop_per_pair"] < cells[(text_len, frames, "full")]["gflop_per_pair"]
