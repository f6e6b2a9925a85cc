"""Scoring as the day grows: pairs/s, per-pair time and peak memory at 20k, 200k and 1M pairs.

    make bench-scale      # .venv/bin/python benchmarks/scoring_scale.py --sizes 20000 200000 1000000

Each size is its own synthetic lake, built from the shipped sample's real texts (hcmrm/sample):
- queries: the sample's distinct queries, and pairs of them joined ("q1 q2") once a day needs more
  distinct queries per ad than the sample has;
- ads: ~40 pairs per ad on average, Zipf-distributed (a few ads with many queries, a long tail with
  one or two), plus one hot ad holding 30% of the day's pairs;
- videos: one per ad, titles/OCR/ASR cycled from the sample's videos, 0-4 small JPEG frames each.
The lake goes through the same commands a user runs (`hcmrm build-lake --sample-dir`,
`hcmrm pseudo-queries`, `hcmrm register-model` of a random-weight `--preset` model: speed does not
depend on training), then one `hcmrm score` of the day in its own process (local profile, one
torch thread per Python worker). A thread polls /proc every 0.2 s for the peak RSS (VmHWM) of the
job's processes: the driver's Python, the driver JVM (local mode: executors live in it), and each
Python worker. Per size it prints pairs/s of the scoring stage, per-pair time of the whole day
relative to the first size, the peaks, and vision encodes against distinct ads and ad rows; the
last line is one JSON object. The machine may be shared: load averages are printed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "hcmrm" / "sample"
HCMRM = [sys.executable, "-m", "jobs.cli"]
DATE = "2024-09-10"
HOT_SHARE = 0.3
PAIRS_PER_AD = 40
JAVA_OPTIONS = "spark.driver.extraJavaOptions"


def jpegs(n: int = 8, size: int = 48) -> list[bytes]:
    """A few small distinct JPEG frames (random colour blocks)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        pixels = rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def query_pool(needed: int) -> list[str]:
    """At least `needed` distinct queries: the sample's, then pairs of them."""
    base = sorted(set(pd.read_parquet(SAMPLE / "query_ad_pairs.parquet")["query"].dropna().str.strip()) - {""})
    pool = list(base)
    for a in base:
        if len(pool) >= needed:
            break
        pool.extend(f"{a} {b}" for b in base if b != a)
    return pool


def ad_sizes(pairs: int, rng: np.random.Generator) -> np.ndarray:
    """Pairs per ad: the hot ad first (30%), the rest Zipf over ~pairs/40 ads, each at least 1."""
    hot = int(pairs * HOT_SHARE)
    n_ads = max(10, (pairs - hot) // PAIRS_PER_AD)
    weights = 1.0 / np.arange(1, n_ads + 1) ** 1.1
    sizes = 1 + rng.multinomial(pairs - hot - n_ads, weights / weights.sum())
    return np.concatenate([[hot], sizes])


def synthetic_day(pairs: int, folder: Path, sizes: np.ndarray | None = None) -> int:
    """Write the day's parquet files (the build-lake sample layout) to `folder`; the pairs written.
    `sizes` (queries per ad) replaces the hot ad + Zipf shape (benchmarks/scoring_compare.py: 40 each)."""
    rng = np.random.default_rng(pairs)
    sizes = ad_sizes(pairs, rng) if sizes is None else np.asarray(sizes)
    pool = np.array(query_pool(int(sizes.max())), dtype=object)
    videos_in = pd.read_parquet(SAMPLE / "videos.parquet")
    frames = jpegs()
    ad_ids = [f"ad{i:07d}" for i in range(len(sizes))]
    queries = np.concatenate([pool[rng.choice(len(pool), n, replace=False)] for n in sizes])
    rows = pd.DataFrame({"dt": DATE, "query": queries, "ad_id": np.repeat(ad_ids, sizes),
                         "impressions": rng.integers(1, 100, len(queries))})
    source = videos_in.iloc[np.arange(len(sizes)) % len(videos_in)].reset_index(drop=True)
    videos = source.assign(video_id=[f"v{i:07d}" for i in range(len(sizes))], dt=DATE,
                           frames=[frames[: rng.integers(0, 5)] for _ in range(len(sizes))])
    ads = pd.DataFrame({"ad_id": ad_ids, "video_id": videos.video_id, "advertiser": "bench", "industry": "bench"})
    folder.mkdir(parents=True)
    rows.to_parquet(folder / "query_ad_pairs.parquet")
    ads.to_parquet(folder / "ads.parquet")
    videos.to_parquet(folder / "videos.parquet")
    (folder / "labeled").symlink_to(SAMPLE / "labeled")
    return len(rows)


class PeakRss:
    """Peak RSS (MB) of a process tree by role, polled from /proc while the job runs."""

    def __init__(self, root_pid: int):
        self.root, self.peaks, self._stop = root_pid, {}, threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.wait(0.2):
            for pid, role in self._tree().items():
                hwm = _status_kb(pid, "VmHWM")
                if hwm is not None:
                    key = (role, pid)
                    self.peaks[key] = max(self.peaks.get(key, 0), hwm / 1024)

    def _tree(self) -> dict[int, str]:
        children: dict[int, list[int]] = {}
        cmd: dict[int, str] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    cmd[int(entry.name)] = (entry / "cmdline").read_bytes().decode(errors="replace")
                except (OSError, ValueError, IndexError):
                    continue
                children.setdefault(ppid, []).append(int(entry.name))
        roles, todo = {}, [self.root]
        while todo:
            pid = todo.pop()
            argv = cmd.get(pid, "").split("\0")
            java = argv[0].endswith("java")  # the JVM's class path names pyspark's jars: test it first
            roles[pid] = "jvm" if java else "worker" if "pyspark.daemon" in argv or "pyspark.worker" in argv \
                else "driver"
            todo.extend(children.get(pid, []))
        return roles

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()

    def peak(self, role: str) -> float:
        return round(max((mb for (r, _), mb in self.peaks.items() if r == role), default=0.0), 1)


def _status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def hcmrm(args: list[str], flags: list[str]) -> str:
    done = subprocess.run([*HCMRM, *args, *flags], cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"hcmrm {args[0]} failed: {done.stderr.strip().splitlines()[-1]}")
    return done.stdout


def prepare(pairs: int, root: Path, preset: str) -> list[str]:
    """The size's lake and registered model; the flags that point commands at them."""
    import torch

    from hcmrm.model.checkpoint import save_model
    from hcmrm.model.network import build_model

    flags = ["--lake", str(root / "lake"), "--tracking-uri", f"sqlite:///{root / 'mlruns.db'}",
             "--artifact-root", str(root / "mlartifacts"), "--model-name", "bench"]
    synthetic_day(pairs, root / "sample")
    torch.manual_seed(0)
    save_model(build_model(preset).eval(), root / "model")
    hcmrm(["build-lake", "--sample-dir", str(root / "sample")], flags)
    hcmrm(["pseudo-queries", "--all-dates"], flags)
    hcmrm(["register-model", "--path", str(root / "model")], flags)
    return flags


def jvm_heap_mb(gc_log: Path) -> dict:
    """The driver JVM's heap from its GC log: the most it committed, and the most still live after a
    collection (what the job needed; the rest is heap the collector kept for speed)."""
    pauses = re.findall(r"(\d+)M->(\d+)M\((\d+)M\)", gc_log.read_text() if gc_log.exists() else "")
    return dict(jvm_heap_committed_peak_mb=max((int(c) for _, _, c in pauses), default=None),
                jvm_heap_live_peak_mb=max((int(a) for _, a, _ in pauses), default=None))


def score_once(flags: list[str], conf: list[str], gc_log: Path) -> dict:
    """One `hcmrm score` of the day with Spark settings `conf`: its printed figures, its processes'
    peak RSS and the driver JVM's heap."""
    options = [c for c in conf if c.startswith(JAVA_OPTIONS + "=")]
    conf = [c for c in conf if c not in options] + [
        f"{JAVA_OPTIONS}={' '.join(o.split('=', 1)[1] for o in options)} -Xlog:gc:file={gc_log}".strip()]
    proc = subprocess.Popen([*HCMRM, "score", "--date", DATE, "--device", "cpu", *flags,
                             *(arg for c in conf for arg in ("--conf", c))], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with PeakRss(proc.pid) as rss:
        out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"hcmrm score failed: {err.strip().splitlines()[-1]}")
    figures = re.search(r"(\d+) pairs = (\d+) scored .*distinct ads (\d+) in (\d+) rows, vision encodes (\d+);.*?"
                        r"([\d.]+) pairs/s; ([\d.]+) s", out, re.S)
    names = ["input_pairs", "scored_pairs", "distinct_ads", "ad_rows", "vision_encodes"]
    result = dict(zip(names, map(int, figures.groups()[:5])))
    result.update(stage_pairs_per_s=float(figures[6]), day_seconds=float(figures[7]),
                  driver_python_peak_mb=rss.peak("driver"), driver_jvm_peak_mb=rss.peak("jvm"),
                  worker_peak_mb=rss.peak("worker"), **jvm_heap_mb(gc_log))
    return result


def variants(specs: list[str]) -> dict[str, list[str]]:
    """`NAME=KEY=VALUE,KEY=VALUE` flags as {name: [KEY=VALUE, ...]}; no flag = the profile as it is
    (`default=` names it among others)."""
    parsed = {} if specs else {"default": []}
    for spec in specs:
        name, _, conf = spec.partition("=")
        parsed[name] = [c for c in conf.split(",") if c]
    return parsed


GROWTH = ("per_pair_ms", "driver_python_peak_mb", "driver_jvm_peak_mb", "worker_peak_mb")


def growth(rows: list[dict]) -> list[str]:
    """Each size against the previous one, per figure the targets bound (1M vs 200k: <= 1.15x / 1.2x)."""
    lines = []
    for before, after in zip(rows, rows[1:]):
        ratios = {k: round(after[k] / before[k], 2) for k in GROWTH if before[k]}
        lines.append(f"{after['variant']}: {after['size']} vs {before['size']} pairs: " + ", ".join(
            f"{k} {v}x" for k, v in ratios.items()))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000, 1_000_000])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=KEY=VALUE[,KEY=VALUE]",
                        help="score each size's lake with these Spark settings (instead of the profile's); repeatable")
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

    confs, rows = variants(args.variant), []
    for turn, size in enumerate(args.sizes):
        root = Path(tempfile.mkdtemp(prefix=f"hcmrm-scale-{size}-"))
        flags = prepare(size, root, args.preset)
        order = list(confs) if turn % 2 == 0 else list(reversed(confs))  # alternate who runs first
        for name in order:
            load = os.getloadavg()[0]
            r = score_once(flags, confs[name], root / f"gc-{name}.log")
            r.update(variant=name, size=size, per_pair_ms=round(1000 * r["day_seconds"] / r["scored_pairs"], 4),
                     load_average=[round(load, 1), round(os.getloadavg()[0], 1)])
            rows.append(r)
            print(json.dumps(r), flush=True)
    for name in confs:
        mine = [r for r in rows if r["variant"] == name]
        for r in mine:
            print(f"{name}: {r['size']:>9} pairs: {r['stage_pairs_per_s']:>8.1f} pairs/s (stage); peak RSS driver"
                  f" {r['driver_python_peak_mb']} MB + JVM {r['driver_jvm_peak_mb']} MB (heap committed"
                  f" {r['jvm_heap_committed_peak_mb']} MB, live {r['jvm_heap_live_peak_mb']} MB), worker"
                  f" {r['worker_peak_mb']} MB; {r['vision_encodes']} vision encodes for {r['distinct_ads']} ads in"
                  f" {r['ad_rows']} rows; load {r['load_average']}")
        print("\n".join(growth(mine)))
    print(json.dumps({"preset": args.preset, "variants": confs, "sizes": rows}))


if __name__ == "__main__":
    main()
