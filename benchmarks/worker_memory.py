"""A scoring Python worker's memory by cause: imports, model, one day's batch.

    make bench-worker-memory   # .venv/bin/python benchmarks/worker_memory.py --presets tiny small base

Each preset runs in a fresh interpreter that walks the steps a Spark Python worker takes for the
scoring UDF, and reads /proc/self/smaps_rollup after each one:
1. the worker's own imports (pandas, pyarrow, pyspark's worker module);
2. torch;
3. the scoring code (udfs.score: hcmrm's model, timm and what they import);
4. the model loaded (Scorer.from_dir of a random-weight preset, saved first);
5. one sample day grouped by ad (hcmrm/sample, --frames per framed ad), read from a pickle the parent
   made (the job reads the video texts from `video_texts`: the worker never loads jieba);
6. that day scored ad-major; the peak RSS (VmHWM) is the worker's high-water mark.
Private memory (Private_Clean + Private_Dirty) is what each worker adds to the machine; the rest of
its RSS is pages shared with other processes (the libraries' code), paid once per host, so RSS
overstates what N workers cost. Figures in MB.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Run in the child: one step at a time, a JSON line after each.
CHILD = r"""
import json, sys
def memory(step):
    fields = {}
    for line in open("/proc/self/smaps_rollup"):
        key, _, value = line.partition(":")
        if key in ("Rss", "Private_Clean", "Private_Dirty"):
            fields[key] = int(value.split()[0]) / 1024
    fields = {"rss": round(fields["Rss"], 1), "private": round(fields["Private_Clean"] + fields["Private_Dirty"], 1)}
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            fields["peak_rss"] = round(int(line.split()[1]) / 1024, 1)
    print(json.dumps({"step": step, **fields}), flush=True)
model_dir, day_file, pairs_per_batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
import pandas, pyarrow, pyspark.worker
memory("worker imports")
import torch
torch.set_num_threads(1)
memory("torch")
import pickle
import udfs.score
from hcmrm.scoring import Scorer, ScoringConfig
memory("scoring code")
scorer = Scorer.from_dir(model_dir, ScoringConfig(pairs_per_batch=pairs_per_batch), device="cpu")
memory("model loaded")
day = pickle.loads(open(day_file, "rb").read())
memory("day read")
scorer.score(day)
memory("day scored")
"""


def save_preset(preset: str, folder: Path) -> Path:
    import torch

    from hcmrm.model.checkpoint import save_model
    from hcmrm.model.network import build_model

    torch.manual_seed(0)
    save_model(build_model(preset).eval(), folder / preset)
    return folder / preset


def save_day(folder: Path, frames: int) -> Path:
    """The sample day as the engine's input (AdPairs per ad), pickled for the child."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from scoring_engine import SAMPLE, group_ads, read_sample, video_texts

    pairs, ads, videos = read_sample(SAMPLE, "2024-09-10")
    path = folder / "day.pkl"
    path.write_bytes(pickle.dumps(group_ads(pairs, ads, videos, video_texts(videos), frames=frames)))
    return path


def measure(preset: str, folder: Path, day: Path, pairs_per_batch: int) -> list[dict]:
    model = folder / preset if (folder / preset).exists() else save_preset(preset, folder)
    done = subprocess.run([sys.executable, "-c", CHILD, str(model), str(day), str(pairs_per_batch)],
                          cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode != 0:
        raise SystemExit(f"{preset}: {done.stderr.strip().splitlines()[-1]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def report(preset: str, steps: list[dict]) -> None:
    """Each step's share: what it added to the worker's private memory, and its RSS after."""
    before = 0.0
    print(f"{preset}: step | adds private | private after | RSS after | peak RSS")
    for s in steps:
        print(f"  {s['step']:<15} | {s['private'] - before:>8.1f} | {s['private']:>8.1f} | {s['rss']:>8.1f} |"
              f" {s['peak_rss']:>8.1f}")
        before = s["private"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "base"])
    parser.add_argument("--frames", type=int, default=4, help="frames per framed ad (copies of its photo)")
    parser.add_argument("--pairs-per-batch", type=int, nargs="+", default=[128],
                        help="fusion batch sizes to compare (ScoringConfig.pairs_per_batch; score.yaml's is 128)")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        day = save_day(Path(tmp), args.frames)
        for preset in args.presets:
            for batch in args.pairs_per_batch:
                name = f"{preset}, {batch} pairs per batch"
                results[name] = measure(preset, Path(tmp), day, batch)
                report(name, results[name])
    print(json.dumps(results))


if __name__ == "__main__":
    main()
