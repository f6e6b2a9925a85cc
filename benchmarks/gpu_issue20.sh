#!/usr/bin/env bash
# Issue 20's one device check (an H200 machine: PyTorch, no Spark), ready for the next session lent a GPU:
#   run(command="bash benchmarks/gpu_issue20.sh", timeout_s=480)
# 1. the labels with JPEGs decoded by nvJPEG against PIL's decode (the shipped stand-alone model, sample lake);
# 2. the engine's pairs/s and the share of time the GPU waits on the host, JPEGs decoded on the host and on the
#    GPU, 8 prepare threads (targets: `base` bf16 cached >= 40k pairs/s, full >= 15k; 40 queries per ad).
# JSON lines under $OUT (the device tool's folder), else experiments/results/gpu.
set -euo pipefail
out=${OUT:-experiments/results/gpu}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/device.txt"
python3 benchmarks/frame_decode_agreement.py --device cuda --model hcmrm/models/kuake-small-match \
    | tee "$out/frame_decode_agreement.json"
python3 benchmarks/engine_gpu.py --preset base --prepare-threads 8 --frame-decode host device \
    --pairs-per-batch 512 | tee "$out/bench_gpu_frame_decode.jsonl"
