"""Does decoding JPEGs on the device change the labels? The sample lake's framed ads scored by
hcmrm.scoring.Scorer twice on one device, frames decoded by PIL on the host (`frame_decode: host`, the pixels
training saw) and by torchvision on the device (`frame_decode: device`; nvJPEG on a GPU): the frames' pixel
difference, the largest score difference and the label agreement. No Spark, so it runs on a bare GPU machine.

    .venv/bin/python benchmarks/frame_decode_agreement.py [--model hcmrm/models/e5small-kuake-qbqtc] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from hcmrm.model.frames import decode_frames, decode_on_device, frames_for_device  # noqa: E402
from hcmrm.scoring import AdPairs, Scorer, ScoringConfig  # noqa: E402


def framed_ads(lake: Path) -> list[AdPairs]:
    """Each ad of the sample whose video has frames, with its pairs' queries (its title as the text: both
    sides read the same text, only the frames' decoding differs)."""
    videos = pd.read_parquet(lake / "videos.parquet")
    ads = pd.read_parquet(lake / "ads.parquet").merge(videos, on="video_id")
    queries = pd.read_parquet(lake / "query_ad_pairs.parquet").groupby("ad_id")["query"].apply(list)
    out = []
    for row in ads.itertuples():
        frames = list(row.frames) if row.frames is not None else []
        if frames and row.ad_id in queries.index:
            out.append(AdPairs(row.ad_id, row.title or "", frames, [q for q in queries[row.ad_id] if q]))
    return [ad for ad in out if ad.queries]


def pixel_difference(ads: list[AdPairs], image_size: int, max_frames: int, device) -> dict:
    """Mean and largest |host - device| of the uint8 pixels (of 255), over the frames both decode."""
    means, largest = [], 0
    for ad in ads:
        try:
            host = decode_frames(ad.frames, image_size, max_frames, normalized=False)
        except ValueError:  # a bad frame: the ad is rejected either way
            continue
        (on_device,) = decode_on_device([frames_for_device(ad.frames, image_size, max_frames)], image_size, device)
        diff = (host.float() - on_device.cpu().float()).abs()
        means.append(float(diff.mean()))
        largest = max(largest, int(diff.max()))
    return {"videos": len(means), "mean_abs": round(float(np.mean(means)), 3), "max_abs": largest}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "hcmrm" / "models" / "e5small-kuake-qbqtc"))
    parser.add_argument("--lake", default=str(REPO / "hcmrm" / "sample"), help="videos, ads, query_ad_pairs Parquet")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ads = framed_ads(Path(args.lake))
    sides = {}
    for decode in ("host", "device"):
        scorer = Scorer.from_dir(args.model, ScoringConfig(frame_decode=decode), args.device)
        sides[decode] = scorer.score(ads)
    kept = [(a, b) for a, b in zip(sides["host"], sides["device"]) if a.probs is not None and b.probs is not None]
    score_diff = max((float(np.abs(a.score - b.score).max()) for a, b in kept), default=0.0)
    same = sum(int((a.label == b.label).sum()) for a, b in kept)
    pairs = sum(len(a.score) for a, _ in kept)
    config = scorer.model.config
    report = {
        "model": Path(args.model).name, "device": args.device, "framed_ads": len(ads), "pairs": pairs,
        "rejected": {side: sum(r.reason is not None for r in results) for side, results in sides.items()},
        "same_reasons": all(a.reason == b.reason for a, b in zip(sides["host"], sides["device"])),
        "pixels": pixel_difference(ads, config.vision.image_size, config.max_frames, torch.device(args.device)),
        "largest_score_difference": round(score_diff, 4), "same_label": round(same / pairs, 4) if pairs else None,
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
