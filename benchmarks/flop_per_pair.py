"""FLOP per scored pair, `full` against `cached` text attention (hcmrm.model.flops; torch.utils.flop_counter).

Two rows for the preset (default `base`, random weights: FLOP do not depend on them), both with N queries
per ad (--queries-per-ad, default 40, the bench day's shape) and --frames frames per ad:
- at the length limits: query = max_query_len, text = max_text_len (base: 32 and 128 tokens);
- at the sample's real lengths: the mean query and video-text token counts of one day of hcmrm/sample
  (the pairs the job would score, texts built as `video_texts` builds them), rounded.
Per ad: the video encode (both modes) and, for cached, the video text's pass. Per pair: the rest.
The last line is one JSON object (figures in FLOP).

With --efficiency PRESET..., instead: how close the plain engine comes to the CPU's own peak, per preset,
one torch thread. The first --pairs scoreable pairs of the sample day (its real lengths and photos,
grouped by ad) are scored once under torch.utils.flop_counter (the FLOP the engine really runs: vision,
text, fusion), then timed (best of --repeats); achieved FLOP/s over a 1-thread fp32 matmul peak
(1024^3, best of 5) measured in the same run, before and after each preset (the larger one kept).

    .venv/bin/python benchmarks/flop_per_pair.py [--preset base] [--queries-per-ad 40] [--frames 4]
    .venv/bin/python benchmarks/flop_per_pair.py --efficiency tiny small base [--pairs 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

import torch  # noqa: E402

from hcmrm.model.flops import pair_flops  # noqa: E402
from hcmrm.model.network import build_model  # noqa: E402
from hcmrm.model.tokenizer import Tokenizer  # noqa: E402
from hcmrm.scoring import Scorer  # noqa: E402
from scoring_engine import SAMPLE, group_ads, read_sample, video_texts  # noqa: E402


def sample_lengths(tokenizer: Tokenizer, date: str) -> tuple[int, int, float]:
    """Mean query tokens, mean video-text tokens (each cut to the model's budget) and queries per ad of one day."""
    day = read_sample(SAMPLE, date)
    ads = group_ads(*day, video_texts(day[2]))
    queries = [q for ad in ads for q in ad.queries]
    q_len = sum(map(len, tokenizer.tokenize(queries, tokenizer.max_query_len))) / len(queries)
    t_len = sum(map(len, tokenizer.tokenize([ad.text for ad in ads], tokenizer.max_text_len))) / len(ads)
    return round(q_len), round(t_len), len(queries) / len(ads)


def gflop(row: dict) -> str:
    g = {k: row[k] / 1e9 for k in ("full_per_pair", "cached_per_pair", "cached_text_per_ad", "video_per_ad",
                                   "full_amortised", "cached_amortised")}
    return (f"query {row['query_len']:3d} text {row['text_len']:3d} | per pair: full {g['full_per_pair']:.2f}"
            f" cached {g['cached_per_pair']:.2f} GFLOP | per ad: video {g['video_per_ad']:.2f} cached text"
            f" {g['cached_text_per_ad']:.2f} | amortised over {row['queries_per_ad']}: full {g['full_amortised']:.2f}"
            f" cached {g['cached_amortised']:.2f} -> {row['ratio_amortised']}x ({row['ratio_without_video']}x"
            " without the video)")


def matmul_peak(n: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of an n x n x n fp32 matmul on this thread, best of `repeats`: the kernel's ceiling."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def engine_efficiency(preset: str, ads: list, repeats: int) -> dict:
    """FLOP the engine runs on `ads` (counted) and the FLOP/s it achieves (timed, best of `repeats`)."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = build_model(preset)
    scorer = Scorer(model, Tokenizer.from_config(model.config))
    scorer.score(ads[:2])  # warm-up
    with FlopCounterMode(display=False) as counter:
        scorer.score(ads)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        scorer.score(ads)
        best = min(best, time.perf_counter() - start)
    pairs = sum(len(ad.queries) for ad in ads)
    return {"pairs": pairs, "gflop_per_pair": round(counter.get_total_flops() / pairs / 1e9, 3),
            "seconds": round(best, 3), "achieved_gflop_s": round(counter.get_total_flops() / best / 1e9, 1)}


def efficiency(presets: list[str], pairs: int, repeats: int, date: str) -> None:
    torch.set_num_threads(1)
    day = read_sample(SAMPLE, date)
    ads = group_ads(*day, video_texts(day[2]), limit=pairs)
    rows = {}
    for preset in presets:
        before = matmul_peak()
        row = engine_efficiency(preset, ads, repeats)
        peak = max(before, matmul_peak())
        rows[preset] = {**row, "matmul_peak_gflop_s": round(peak / 1e9, 1),
                        "efficiency": round(row["achieved_gflop_s"] * 1e9 / peak, 3)}
        r = rows[preset]
        print(f"{preset:6s} {r['pairs']} pairs, {r['gflop_per_pair']} GFLOP/pair: {r['achieved_gflop_s']} GFLOP/s"
              f" achieved / {r['matmul_peak_gflop_s']} GFLOP/s matmul peak = {r['efficiency']}", flush=True)
    print(json.dumps({"torch_threads": 1, "sample_date": date, **rows}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="base")
    parser.add_argument("--queries-per-ad", type=int, default=40)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--date", default="2024-09-10", help="the sample day whose real lengths are used")
    parser.add_argument("--efficiency", nargs="+", metavar="PRESET",
                        help="instead: achieved FLOP/s of the engine over a 1-thread matmul peak, per preset")
    parser.add_argument("--pairs", type=int, default=200, help="--efficiency: the sample day's first N pairs")
    parser.add_argument("--repeats", type=int, default=2, help="--efficiency: timed runs per preset, best kept")
    args = parser.parse_args()
    if args.efficiency:
        efficiency(args.efficiency, args.pairs, args.repeats, args.date)
        return
    torch.manual_seed(0)
    full = build_model(args.preset, max_frames=max(args.frames, 1)).eval()
    cached = build_model(args.preset, max_frames=max(args.frames, 1), text_attention="cached").eval()
    cached.load_state_dict(full.state_dict())
    c = full.config
    q_len, t_len, sample_n = sample_lengths(Tokenizer.from_config(c), args.date)
    rows = {"limits": pair_flops(full, cached, c.max_query_len, c.max_text_len, args.frames, args.queries_per_ad),
            "sample_lengths": pair_flops(full, cached, q_len, t_len, args.frames, args.queries_per_ad)}
    report = {"preset": args.preset, "sample_date": args.date, "sample_queries_per_ad": round(sample_n, 2),
              **{k: v.as_dict() for k, v in rows.items()}}
    for name, row in rows.items():
        print(f"{args.preset} {name:14s} {gflop(row.as_dict())}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
