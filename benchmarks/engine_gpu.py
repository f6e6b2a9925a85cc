"""Pairs/s, FLOP per pair and MFU of the scoring engine alone (hcmrm.scoring.Scorer; no Spark, no pyspark).

`make bench-gpu`: the `base` preset (random weights: speed does not depend on them) in bf16 on the device,
on a grid of video-text length (64, 128 tokens) x frames per ad (1, 4) x text attention (full, cached).
Each cell scores --ads synthetic ads of --queries-per-ad queries (--query-len tokens each; random
common Chinese characters, one token each) with real encoded JPEG frames, so frame decoding counts too.
FLOP per pair are counted by torch.utils.flop_counter (hcmrm.model.flops, amortised over the ad's queries);
MFU = pairs/s x FLOP per pair / peak, the peak being a square bf16 matmul (fp32 on CPU) measured in the
same run, or --peak-tflops. Each cell runs once per setting "N/D": --prepare-threads N (0: frames decoded and
text tokenised in line; N: the next chunk prepared on N threads while the device runs this one) x
--frame-decode D (host: JPEGs decoded by PIL on those threads; device: a chunk's JPEGs decoded in one batch on
the device, nvJPEG on a GPU), the settings interleaved over --rounds timed passes after a warm-up: best pairs/s
per setting, the median (min-max) ratio of each setting over the first, and the median share of the time the
device waited on the host (decoding and tokenising in line, or waiting for the prepare threads to finish the
next chunk). Last line: JSON.

    .venv/bin/python benchmarks/engine_gpu.py [--device auto] [--preset base] [--ads 256] [--rounds 3]
    .venv/bin/python benchmarks/engine_gpu.py --device cpu --preset tiny --ads 4 --rounds 1   # smoke test
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from hcmrm.model.flops import pair_flops  # noqa: E402
from hcmrm.model.network import build_model  # noqa: E402
from hcmrm.model.tokenizer import Tokenizer  # noqa: E402
from hcmrm.scoring import AdPairs, Scorer, ScoringConfig  # noqa: E402

CHARS = ("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多"
         "定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还")


def jpeg(rng: random.Random, size: int = 320) -> bytes:
    out = io.BytesIO()
    Image.effect_noise((size, size * 9 // 16), 40).convert("RGB").point(lambda v: (v + rng.randrange(256)) % 256).save(
        out, format="JPEG", quality=85)
    return out.getvalue()


def synthetic_ads(n: int, queries: int, query_len: int, text_len: int, frames: int, seed: int = 0) -> list[AdPairs]:
    rng = random.Random(seed)
    pool = [jpeg(rng) for _ in range(8)]

    def words(k: int) -> str:
        return "".join(rng.choice(CHARS) for _ in range(k))

    return [AdPairs(f"ad-{i}", words(text_len), [rng.choice(pool) for _ in range(frames)],
                    [words(query_len) for _ in range(queries)]) for i in range(n)]


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int) -> float:
    """FLOP/s of a square matmul on this device: the peak MFU is measured against."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(4):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_cell(scorers: dict[str, Scorer], ads: list[AdPairs], rounds: int) -> tuple[dict, dict]:
    """(pairs/s, the share of the time the device waited on the host) of each scorer over `rounds` timed
    passes, the scorers interleaved within a round, after a warm-up. The wait is the scoring thread's time in
    the host's work done in line or waiting for the prepare threads (Scorer.counters.host_seconds)."""
    pairs = sum(len(a.queries) for a in ads)
    for scorer in scorers.values():
        scorer.score(ads[: max(1, len(ads) // 8)])
    rates: dict[str, list[float]] = {key: [] for key in scorers}
    waits: dict[str, list[float]] = {key: [] for key in scorers}
    for _ in range(rounds):
        for key, scorer in scorers.items():
            sync(scorer.device)
            host_before, start = scorer.counters.host_seconds, time.perf_counter()
            scorer.score(ads)
            sync(scorer.device)
            seconds = time.perf_counter() - start
            rates[key].append(pairs / seconds)
            waits[key].append((scorer.counters.host_seconds - host_before) / seconds)
    return rates, waits


def prepare_rate(scorer: Scorer, ads: list[AdPairs]) -> float:
    """pairs/s of the CPU work alone (decode every ad's frames, or with frame_decode="device" read their
    headers; tokenise its pairs) on the calling thread."""
    start = time.perf_counter()
    for ad in ads:
        scorer._decode(ad)
    scorer._tokenize(ads)
    return sum(len(a.queries) for a in ads) / (time.perf_counter() - start)


def ratio_text(over: list[float], base: list[float]) -> str:
    ratios = [a / b for a, b in zip(over, base)]
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--preset", default="base")
    parser.add_argument("--text-lens", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--frames", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--modes", nargs="+", default=["full", "cached"], choices=["full", "cached"])
    parser.add_argument("--ads", type=int, default=256)
    parser.add_argument("--queries-per-ad", type=int, default=40)
    parser.add_argument("--query-len", type=int, default=8)
    parser.add_argument("--pairs-per-batch", type=int, default=512)
    parser.add_argument("--frames-per-chunk", type=int, default=128, help="a vision pass's frame slots")
    parser.add_argument("--prepare-threads", type=int, nargs="+", default=[0, 8],
                        help="settings compared in each cell; the first is the ratio's base")
    parser.add_argument("--frame-decode", nargs="+", default=["host", "device"], choices=["host", "device"],
                        help="where JPEGs are decoded, each compared with every --prepare-threads setting")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak; default: a matmul measured here")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    peak = args.peak_tflops * 1e12 if args.peak_tflops else matmul_peak(
        device, torch.bfloat16 if device.type == "cuda" else torch.float32, 8192 if device.type == "cuda" else 1024)
    max_frames = max(args.frames)
    torch.manual_seed(0)
    models = {mode: build_model(args.preset, max_frames=max_frames, text_attention=mode).eval() for mode in args.modes}
    for model in models.values():
        model.load_state_dict(next(iter(models.values())).state_dict())
    full_ref = models.get("full") or build_model(args.preset, max_frames=max_frames).eval()
    cached_ref = models.get("cached") or build_model(args.preset, max_frames=max_frames, text_attention="cached").eval()
    configs = {f"{n}/{decode}": ScoringConfig(pairs_per_batch=args.pairs_per_batch,
                                              frames_per_chunk=args.frames_per_chunk, bf16=True,
                                              torch_threads=args.threads, prepare_threads=n, frame_decode=decode)
               for decode in args.frame_decode for n in args.prepare_threads}
    base = next(iter(configs))
    tokenizer = Tokenizer.from_config(full_ref.config)
    cells = []
    query_len = min(args.query_len, full_ref.config.max_query_len)
    for text_len in sorted({min(t, full_ref.config.max_text_len) for t in args.text_lens}):
        for frames in args.frames:
            flops = pair_flops(full_ref.to(device), cached_ref.to(device), query_len, text_len, frames,
                               args.queries_per_ad)
            ads = synthetic_ads(args.ads, args.queries_per_ad, query_len, text_len, frames)
            for mode in args.modes:
                scorers = {n: Scorer(models[mode], tokenizer, config, device) for n, config in configs.items()}
                rates, waits = run_cell(scorers, ads, args.rounds)
                per_pair = flops.full_amortised if mode == "full" else flops.cached_amortised
                cells.append({"text_len": text_len, "frames": frames, "mode": mode,
                              "pairs_per_s": {n: round(max(r), 1) for n, r in rates.items()},
                              "device_waits_on_host": {n: round(statistics.median(w), 3) for n, w in waits.items()},
                              "prepare_only_pairs_per_s": round(prepare_rate(scorers[base], ads), 1),
                              "over_" + base: {n: ratio_text(r, rates[base]) for n, r in rates.items() if n != base},
                              "gflop_per_pair": float(f"{per_pair / 1e9:.4g}"),
                              "mfu": {n: float(f"{max(r) * per_pair / peak:.3g}") for n, r in rates.items()}})
                print(json.dumps(cells[-1]), flush=True)
    report = {"preset": args.preset, "device": str(device),
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "dtype": "bf16" if device.type == "cuda" else "fp32", "peak_tflops": float(f"{peak / 1e12:.4g}"),
              "peak_from": "--peak-tflops" if args.peak_tflops else "matmul measured in this run",
              "ads": args.ads, "queries_per_ad": args.queries_per_ad, "query_len": query_len,
              "pyspark_loaded": "pyspark" in sys.modules, "cells": cells}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
