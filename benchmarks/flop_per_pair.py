"""FLOP per scored pair, `full` against `cached` text attention (hcmrm.model.flops; torch.utils.flop_counter).

Two rows for the preset (default `base`, random weights: FLOP do not depend on them), both with N queries
per ad (--queries-per-ad, default 40, the bench day's shape) and --frames frames per ad:
- at the length limits: query = max_query_len, text = max_text_len (base: 32 and 128 tokens);
- at the sample's real lengths: the mean query and video-text token counts of one day of hcmrm/sample
  (the pairs the job would score, texts built as `video_texts` builds them), rounded.
Per ad: the video encode (both modes) and, for cached, the video text's pass. Per pair: the rest.
The last line is one JSON object (figures in FLOP).

    .venv/bin/python benchmarks/flop_per_pair.py [--preset base] [--queries-per-ad 40] [--frames 4]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

import torch  # noqa: E402

from hcmrm.model.flops import pair_flops  # noqa: E402
from hcmrm.model.network import build_model  # noqa: E402
from hcmrm.model.tokenizer import Tokenizer  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="base")
    parser.add_argument("--queries-per-ad", type=int, default=40)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--date", default="2024-09-10", help="the sample day whose real lengths are used")
    args = parser.parse_args()
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
