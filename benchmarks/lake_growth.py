"""A night that costs the day, not the lake: the score job on one fixed day as the lake grows around it.

Two synthetic lakes (Delta, temp folder) hold the same day D: --ads ads, each its own video (dt D - 1) with
--frames JPEG frames of realistic size (--frame-side px, noise, each frame's bytes unique) and a video
text, --queries-per-ad queries per ad. Beside it, each lake holds videos on --other-dates other dates that
no pair of D needs: as many as the day's (1x) in one lake, ten times as many (10x) in the other, frames and
texts included. A --preset model with random weights (speed does not depend on training) is the champion.

Each round scores D once in each lake (`jobs.score.score_date`, `local` profile, the whole job: Delta
reads, validation, fingerprints, carry-over lookup, engine, writes, commit), the order alternating by
round, after one untimed warm-up night in each lake. Printed: per night its seconds; then the median ratio
10x / 1x and its spread (min, max). Last line: one JSON object with `night_ratio`. The machine may be
shared: load averages are printed.

    .venv/bin/python benchmarks/lake_growth.py [--ads 200] [--queries-per-ad 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

from scoring_incremental import spread, text, write_video_texts  # noqa: E402
from scoring_spark_overhead import register  # noqa: E402


def noise_jpegs(rng: random.Random, side: int, count: int = 16) -> list[bytes]:
    """`count` JPEGs of random pixels, side x side * 9 / 16: the size of real frames (tens of KB)."""
    from PIL import Image

    out = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.frombytes("RGB", (side, side * 9 // 16), rng.randbytes(side * (side * 9 // 16) * 3)).save(
            buffer, format="JPEG", quality=85)
        out.append(buffer.getvalue())
    return out


def unique(frame: bytes, rng: random.Random) -> bytes:
    """`frame` with a JPEG comment of 16 random bytes after its start marker: the same picture, bytes that no
    other frame has (Parquet would otherwise store repeated frames once, in a dictionary)."""
    comment = b"\xff\xfe" + (18).to_bytes(2, "big") + rng.randbytes(16)
    return frame[:2] + comment + frame[2:]


def video_rows(rng: random.Random, pool: list[bytes], ids: list[str], day: str, frames: int) -> list[tuple]:
    return [(v, text(rng, 8, 20), text(rng, 20, 50), None, [unique(rng.choice(pool), rng) for _ in range(frames)],
             day) for v in ids]


def write_lake(spark, settings, rng, pool, args, other_videos: int, day: str) -> None:
    """The day's pairs and ads, their videos (dt day - 1), and `other_videos` videos spread over other dates."""
    from jobs.tables import overwrite_table

    video_day = (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()
    # Written a date at a time: a whole lake's frames in one createDataFrame would pass through the driver's heap.
    schema = "video_id string, title string, ocr_text string, asr_text string, frames array<binary>, dt string"
    videos = video_rows(rng, pool, [f"v{a}" for a in range(args.ads)], video_day, args.frames)
    overwrite_table(spark.createDataFrame(videos, schema), settings.table("videos"), "dt")
    texts_of = [(v[0], v[-1], f"{v[1]} {v[2]}") for v in videos]
    for k in range(args.other_dates):
        other_day = (dt.date.fromisoformat(day) - dt.timedelta(days=30 + k)).isoformat()
        ids = [f"o{k}_{i}" for i in range(k, other_videos, args.other_dates)]
        rows = video_rows(rng, pool, ids, other_day, args.frames)
        spark.createDataFrame(rows, schema).write.format("delta").mode("append").partitionBy("dt").save(
            settings.table("videos"))
        texts_of += [(v[0], v[-1], f"{v[1]} {v[2]}") for v in rows]
    texts = texts_of
    pairs = [(day, text(rng, 2, 8), f"ad{a}", 1) for a in range(args.ads) for _ in range(args.queries_per_ad)]
    tables = {
        "ads": (spark.createDataFrame([(f"ad{a}", f"v{a}", "adv", "ind") for a in range(args.ads)],
                                      "ad_id string, video_id string, advertiser string, industry string"), None),
        "query_ad_pairs": (spark.createDataFrame(pairs, "dt string, query string, ad_id string, impressions long"),
                           "dt"),
    }
    for name, (df, part) in tables.items():
        overwrite_table(df, settings.table(name), part)
    write_video_texts(spark, settings, texts)  # as pseudo-queries writes them, content fingerprints included


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--ads", type=int, default=200)
    parser.add_argument("--queries-per-ad", type=int, default=20)
    parser.add_argument("--frames", type=int, default=4, help="frames per video")
    parser.add_argument("--frame-side", type=int, default=320, help="frame width in px (height 9/16 of it)")
    parser.add_argument("--other-dates", type=int, default=10)
    parser.add_argument("--growth", type=int, default=10, help="the big lake's other videos, in days' worth")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", default="local", help="Spark profile (conf/spark)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from hcmrm.config import load
    from hcmrm.settings import Settings
    from hcmrm.tracking.model_uri import champion_uri
    from hcmrm.tracking.store import use_experiment
    from jobs.model_shipping import release_model, resolve_model, ship_model
    from jobs.score import score_date
    from jobs.scoring_config import CONF_FILE, ScoreJobConfig
    from jobs.session import arrow_batches, spark_session

    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="hcmrm-bench-lake-growth-"))
    day = "2024-09-10"
    lakes = {}
    for growth in (1, args.growth):
        lakes[growth] = Settings(lake=str(root / f"lake{growth}x"), tracking_uri=f"sqlite:///{root / 'mlruns.db'}",
                                 artifact_root=str(root / "mlartifacts"), model_name="bench",
                                 spark_profile=args.profile)
    register(lakes[1], args.preset, root)
    config = load(ScoreJobConfig, CONF_FILE)
    spark = spark_session(args.profile, app_name="hcmrm-bench-lake-growth")
    pool = noise_jpegs(rng, args.frame_side)
    for growth, settings in lakes.items():
        write_lake(spark, settings, rng, pool, args, growth * args.ads, day)
    sizes = {g: sum(f.stat().st_size for f in Path(s.table("videos")).rglob("*.parquet")) for g, s in lakes.items()}
    print(json.dumps({"videos_table_mb": {f"{g}x": round(b / 2**20, 1) for g, b in sizes.items()}}), flush=True)
    experiment = use_experiment(lakes[1], config.experiment)
    model = ship_model(spark, resolve_model(lakes[1], champion_uri("bench"), config.engine))
    seconds: dict[int, list[float]] = {g: [] for g in lakes}
    load_before = os.getloadavg()[0]
    try:
        with arrow_batches(spark, config.arrow_batch, config.pairs_per_row), contextlib.redirect_stderr(io.StringIO()):
            for settings in lakes.values():  # warm-up: the JVM, the workers, the model
                score_date(spark, settings, config, day, model, experiment)
            for r in range(args.rounds):
                for growth in (lakes if r % 2 == 0 else reversed(lakes)):
                    start = time.perf_counter()
                    result = score_date(spark, lakes[growth], config, day, model, experiment)
                    seconds[growth].append(round(time.perf_counter() - start, 2))
                    print(json.dumps({"round": r, "lake": f"{growth}x", "seconds": seconds[growth][-1],
                                      "scored": result.scored_pairs}), flush=True)
    finally:
        release_model(model)
        spark.stop()
    report = {"preset": args.preset, "pairs": args.ads * args.queries_per_ad, "frames_per_video": args.frames,
              "other_videos": {f"{g}x": g * args.ads for g in lakes}, "rounds": args.rounds,
              "night_ratio": statistics.median(ratios := [b / a for a, b in zip(seconds[1], seconds[args.growth])]),
              "night_ratio_spread": spread(ratios), "seconds": {f"{g}x": s for g, s in seconds.items()},
              "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)]}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
