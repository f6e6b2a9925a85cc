"""Pre-training at two corpus sizes on the standalone cluster: does anything grow with the corpus?

    make bench-train-scale        # = .venv/bin/python benchmarks/train_scale.py --rows 20000 1000000

Per size: a synthetic `pretrain_pairs` (the sample's titles and OCR text; a small JPEG frame on a share of
the rows; files of 50k rows in row groups of 5k) and `hcmrm pretrain --num-processes 2` (TorchDistributor,
local_mode=False) for a fixed number of steps with the `tiny` preset on a 2-worker standalone cluster. It
prints steps/s (MLflow's `seconds` over the steps), the share of step time spent waiting for the next batch
(`train/data_wait_s` over `train/step_s`), and the peak memory (PSS, so shared pages count once) of the driver
(spark-submit's JVM and its Python) and of each rank (the rank and its loader workers), sampled every 0.2 s.
The last line is one JSON object with the ratios of the largest size to the smallest. A bench, not a test.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hcmrm.settings import SAMPLE_DIR  # noqa: E402

FILE_ROWS, GROUP_ROWS = 50_000, 5_000


def texts_and_frames(framed: int = 64) -> tuple[list[tuple[str, str]], list[bytes]]:
    """(pseudo-query, context) pairs from the sample's videos, and small JPEG frames from its photos."""
    videos = pq.read_table(SAMPLE_DIR / "videos.parquet", columns=["title", "ocr_text", "frames"]).to_pylist()
    pairs = [(v["title"].strip()[:8], f"{v['title']} {v['ocr_text'] or ''}".strip())
             for v in videos if v["title"] and v["title"].strip()]  # the sample keeps blank titles on purpose
    frames = []
    for v in videos:
        for raw in (v["frames"] or [])[:1]:
            try:
                image = Image.open(io.BytesIO(raw)).convert("RGB").resize((48, 48))
            except OSError:
                continue  # the sample keeps a few bad frames on purpose
            out = io.BytesIO()
            image.save(out, format="JPEG", quality=80)
            frames.append(out.getvalue())
        if len(frames) >= framed:
            break
    return pairs, frames


def write_corpus(folder: Path, rows: int, framed_share: float, seed: int = 0) -> None:
    pairs, frames = texts_and_frames()
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    for start in range(0, rows, FILE_ROWS):
        with pq.ParquetWriter(folder / f"part-{start // FILE_ROWS:05d}.parquet", pa.schema([
            ("pseudo_query", pa.string()), ("context_text", pa.string()), ("frames", pa.list_(pa.binary()))
        ])) as writer:
            for group in range(start, min(start + FILE_ROWS, rows), GROUP_ROWS):
                n = min(GROUP_ROWS, rows - group, start + FILE_ROWS - group)
                chosen = [rng.choice(pairs) for _ in range(n)]
                writer.write_table(pa.table({
                    "pseudo_query": [q for q, _ in chosen], "context_text": [c for _, c in chosen],
                    "frames": [[rng.choice(frames)] if rng.random() < framed_share else None for _ in range(n)],
                }))


# --- memory of the processes --------------------------------------------------------------------


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                found[int(entry.name)] = (ppid, (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
    return found


def pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree(pid: int, table: dict[int, tuple[int, str]]) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += [c for c, (parent, _) in table.items() if parent == p]
    return out


class PeakMemory(threading.Thread):
    """Peak PSS of the driver (the submit process and its children) and of each training rank with its workers."""

    def __init__(self, driver_pid: int):
        super().__init__(daemon=True)
        self.driver_pid, self.driver, self.ranks, self.done = driver_pid, 0, {}, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            table = processes()
            self.driver = max(self.driver, sum(pss(p) for p in tree(self.driver_pid, table)))
            for launcher, (_, cmd) in table.items():
                if "torch.distributed.run" not in cmd and "torchrun" not in cmd:
                    continue
                for rank in [c for c, (parent, _) in table.items() if parent == launcher]:
                    self.ranks[rank] = max(self.ranks.get(rank, 0), sum(pss(p) for p in tree(rank, table)))


# --- one run ------------------------------------------------------------------------------------


def run_size(master: str, rows: int, steps: int, args, work: Path) -> dict:
    corpus, state = work / f"corpus-{rows}", work / f"state-{rows}"
    started = time.time()
    write_corpus(corpus, rows, args.framed_share)
    print(f"{rows:,} rows written in {time.time() - started:.0f} s", flush=True)
    tracking = f"sqlite:///{state / 'mlruns.db'}"
    command = [str(REPO / "bin" / "spark-submit-local"), "jobs/pretrain.py", "--input", str(corpus),
               "--num-processes", "2", "--spark-profile", "cluster", "--device", "cpu", "--preset", "tiny",
               "--steps", str(steps), "--batch-size", str(args.batch_size), "--threads", "1", "--log-every", "1",
               "--no-progress", "--out", str(state / "run"), "--lake", str(state / "lake"),
               "--tracking-uri", tracking, "--artifact-root", str(state / "mlartifacts")]
    env = dict(os.environ, SPARK_MASTER=master, PYTHONPATH=str(REPO), MLFLOW_DISABLE_TELEMETRY="true")
    job = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    memory = PeakMemory(job.pid)
    memory.start()
    out, err = job.communicate(timeout=3600)
    memory.done.set()
    memory.join()
    if job.returncode:
        log = Path(tempfile.gettempdir()) / f"hcmrm-bench-train-{rows}.log"
        log.write_text(out + err)
        errors = [line for line in err.splitlines() if "Error" in line]
        raise SystemExit(f"pretrain at {rows} rows exited {job.returncode} (its output: {log}):\n" + "\n".join(errors[-20:]))
    return {"rows": rows, **mlflow_figures(tracking, state), "driver_peak_mb": memory.driver / 2**20,
            "rank_peak_mb": [v / 2**20 for v in memory.ranks.values()]}


def mlflow_figures(tracking: str, state: Path) -> dict:
    import mlflow

    mlflow.set_tracking_uri(tracking)
    client = mlflow.MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("hcmrm-pretrain").experiment_id])
    history = {name: [m.value for m in client.get_metric_history(run.info.run_id, name)]
               for name in ("train/data_wait_s", "train/step_s")}
    steady = slice(1, None)  # the first step also waits for the workers to start and fill their buffers
    wait, step = sum(history["train/data_wait_s"][steady]), sum(history["train/step_s"][steady])
    return {"steps_per_s": run.data.metrics["steps"] / run.data.metrics["seconds"],
            "data_wait_fraction": wait / step, "first_batch_s": history["train/data_wait_s"][0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 1_000_000])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--framed-share", type=float, default=0.25, help="share of rows with a JPEG frame")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hcmrm-bench-train-") as tmp:
        work = Path(tmp)
        cluster = [sys.executable, str(REPO / "scripts" / "standalone_cluster.py")]
        master = subprocess.run([*cluster, "start", "--state", str(work / "cluster.json")], check=True,
                                capture_output=True, text=True).stdout.strip()
        try:
            results = [run_size(master, rows, args.steps, args, work) for rows in args.rows]
        finally:
            subprocess.run([*cluster, "stop", "--state", str(work / "cluster.json")], check=True)
    for r in results:
        print(f"{r['rows']:>9,} rows: {r['steps_per_s']:.2f} steps/s, data wait {r['data_wait_fraction']:.1%} of step "
              f"time (first batch {r['first_batch_s']:.1f} s), driver peak {r['driver_peak_mb']:.0f} MB, rank peaks "
              + ", ".join(f"{m:.0f} MB" for m in r["rank_peak_mb"]))
    small, large = results[0], results[-1]
    print(json.dumps({
        "driver_rss_ratio": round(large["driver_peak_mb"] / small["driver_peak_mb"], 3),
        "rank_rss_ratio": round(max(large["rank_peak_mb"]) / max(small["rank_peak_mb"]), 3),
        "steps_per_s_ratio": round(large["steps_per_s"] / small["steps_per_s"], 3),
        "data_wait_fraction": round(max(r["data_wait_fraction"] for r in results), 4),
    }))


if __name__ == "__main__":
    main()
