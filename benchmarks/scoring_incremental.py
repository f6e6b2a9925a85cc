"""Incremental scoring: the score job on a day whose pairs mostly repeat an earlier day's, against a fresh day.

Inputs: a synthetic lake (Delta, temp folder): --ads ads, each its own video with one small JPEG frame
and a video text of realistic length (60-120 characters), --queries-per-ad queries per ad per day;
a --preset model with random weights (speed does not depend on training) registered as champion.
Days: a base day, then per round a *fresh* day (every query new) and a *repeat* day (per ad,
--repeat-share of the base day's queries, the rest new), the same number of pairs. Both go through the
whole job, `jobs.score.score_date` on the `local` profile (2 Python workers, 1 torch thread each), with
carry-over on (the default): Delta reads, validation, the fingerprints, the lookup of the earlier days'
committed scores, the engine on the misses, writes, run log, MLflow.

The base day is scored first (untimed: it also warms the JVM and the workers). Rounds interleave the
two kinds (fresh first in even rounds, repeat first in odd ones); each round's ratio is repeat seconds
over fresh seconds. Printed: per day its seconds, scored and carried pairs; then the median ratio and
its spread (min, max) for the whole day and for the scoring stage alone (the action that runs the
engine). Last line: one JSON object. The machine may be shared: load averages are printed.

    .venv/bin/python benchmarks/scoring_incremental.py [--preset small] [--ads 100] [--queries-per-ad 40]
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

from scoring_spark_overhead import register  # noqa: E402

# Common characters of ad copy and search queries: texts of realistic token counts, not real sentences.
CHARS = ("连衣裙夏季新款显瘦长裙红色手机拍照旗舰夜景考研英语网课名师直播护肤面霜补水美白口红男士运动鞋跑步"
         "篮球户外登山帐篷家用厨房锅具电饭煲空调冰箱洗衣机儿童玩具积木宝宝奶粉零食坚果咖啡茶叶白酒汽车保养"
         "轮胎保险理财贷款游戏手游角色装备旅游酒店机票租房装修家具沙发床垫猫粮狗粮宠物健身瑜伽减肥课程")


def text(rng: random.Random, low: int, high: int) -> str:
    return "".join(rng.choice(CHARS) for _ in range(rng.randint(low, high)))


def jpeg(rng: random.Random) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (96, 64), tuple(rng.randrange(256) for _ in range(3))).save(out, format="JPEG")
    return out.getvalue()


def plan_days(rng: random.Random, ads: int, per_ad: int, rounds: int, share: float, start: str):
    """(pair rows (dt, query, ad_id, impressions), base day, [(kind, day)] in timing order)."""
    seen: set[str] = set()

    def new_query() -> str:
        while (q := text(rng, 2, 8)) in seen:
            pass
        seen.add(q)
        return q

    day0 = dt.date.fromisoformat(start)
    base = {a: [new_query() for _ in range(per_ad)] for a in range(ads)}
    rows = [(start, q, f"ad{a}", 1) for a, qs in base.items() for q in qs]
    kept = round(per_ad * share)
    order = []
    for r in range(rounds):
        kinds = ("fresh", "repeat") if r % 2 == 0 else ("repeat", "fresh")
        for k, kind in enumerate(kinds):
            day = (day0 + dt.timedelta(days=1 + 2 * r + k)).isoformat()
            for a in range(ads):
                queries = rng.sample(base[a], kept) if kind == "repeat" else []
                queries += [new_query() for _ in range(per_ad - len(queries))]
                rows += [(day, q, f"ad{a}", 1) for q in queries]
            order.append((kind, day))
    return rows, start, order


def write_video_texts(spark, settings, texts: list[tuple]) -> None:
    """video_texts from `texts` (video_id, dt, video_text) as pseudo-queries writes them: beside each text the
    content fingerprint of the video's frames in the lake's `videos` and the Delta version they were read at
    (with no record of frame problems: the engine decodes and decides, as for every good frame)."""
    from pyspark.sql import functions as F

    from hcmrm.tables import VIDEO_TEXTS
    from jobs.tables import overwrite_table, read_table, spark_schema, table_version
    from udfs.score import content_fingerprint

    version = table_version(spark, settings.table("videos"))
    frames = read_table(spark, settings.table("videos"), version).select("video_id", "dt", "frames")
    rows = (spark.createDataFrame(texts, "video_id string, dt string, video_text string")
            .join(frames, ["video_id", "dt"], "left")
            .select("video_id", "dt", "video_text", F.lit("{}").alias("text_settings"),
                    F.lit("bench").alias("text_fingerprint"), F.lit(None).cast("string").alias("pseudo_query_run_id"),
                    content_fingerprint(F.col("video_text"), F.col("frames")).alias("content_fingerprint"),
                    F.lit(version).cast("long").alias("videos_version"),
                    F.coalesce(F.size("frames"), F.lit(0)).cast("int").alias("n_frames"),
                    F.lit(None).cast(spark_schema(VIDEO_TEXTS)["frame_problems"].dataType).alias("frame_problems"),
                    F.lit(None).cast("string").alias("frame_limits")))
    assert tuple(rows.columns) == VIDEO_TEXTS.columns
    overwrite_table(rows, settings.table(VIDEO_TEXTS.name), "dt")


def write_lake(spark, settings, rng: random.Random, ads: int, rows: list) -> None:
    from jobs.tables import overwrite_table

    videos = [(f"v{a}", text(rng, 8, 20), text(rng, 20, 50), None, [jpeg(rng)], "2024-08-01") for a in range(ads)]
    texts = [(v[0], v[-1], " ".join(t for t in v[1:3] if t) + text(rng, 30, 50)) for v in videos]
    tables = {
        "videos": (spark.createDataFrame(videos, "video_id string, title string, ocr_text string, asr_text string, "
                                                 "frames array<binary>, dt string"), "dt"),
        "ads": (spark.createDataFrame([(f"ad{a}", f"v{a}", "adv", "ind") for a in range(ads)],
                                      "ad_id string, video_id string, advertiser string, industry string"), None),
        "query_ad_pairs": (spark.createDataFrame(rows, "dt string, query string, ad_id string, impressions long"), "dt"),
    }
    for name, (df, part) in tables.items():
        overwrite_table(df, settings.table(name), part)
    write_video_texts(spark, settings, texts)


def spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--ads", type=int, default=100)
    parser.add_argument("--queries-per-ad", type=int, default=40)
    parser.add_argument("--repeat-share", type=float, default=0.8, help="share of a repeat day's pairs seen before")
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
    root = Path(tempfile.mkdtemp(prefix="hcmrm-bench-incr-"))
    settings = Settings(lake=str(root / "lake"), tracking_uri=f"sqlite:///{root / 'mlruns.db'}",
                        artifact_root=str(root / "mlartifacts"), model_name="bench", spark_profile=args.profile)
    register(settings, args.preset, root)
    rows, base, order = plan_days(rng, args.ads, args.queries_per_ad, args.rounds, args.repeat_share, "2024-09-01")
    config = load(ScoreJobConfig, CONF_FILE)
    if config.carry_over_days < 2 * args.rounds:
        raise SystemExit(f"carry_over_days {config.carry_over_days} does not reach the base day from the last round")
    spark = spark_session(args.profile, app_name="hcmrm-bench-incremental")
    write_lake(spark, settings, rng, args.ads, rows)
    experiment = use_experiment(settings, config.experiment)
    model = ship_model(spark, resolve_model(settings, champion_uri(settings.model_name), config.engine))
    days, load_before = [], os.getloadavg()[0]
    try:
        with arrow_batches(spark, config.arrow_batch, config.pairs_per_row), contextlib.redirect_stderr(io.StringIO()):
            score_date(spark, settings, config, base, model, experiment)  # the earlier day; warms the workers
            for kind, day in order:
                start = time.perf_counter()
                r = score_date(spark, settings, config, day, model, experiment)
                days.append({"kind": kind, "dt": day, "seconds": round(time.perf_counter() - start, 2),
                             "stage_seconds": round(r.scored_pairs / r.pairs_per_second, 2),
                             "scored": r.scored_pairs, "carried": r.carried_pairs, "vision_encodes": r.vision_encodes})
                print(json.dumps(days[-1]), flush=True)
    finally:
        release_model(model)
        spark.stop()
    fresh, repeat = ([d for d in days if d["kind"] == k] for k in ("fresh", "repeat"))
    expected = args.ads * round(args.queries_per_ad * args.repeat_share)
    if any(d["carried"] for d in fresh) or any(d["carried"] != expected for d in repeat):
        raise SystemExit(f"carried pairs: fresh {[d['carried'] for d in fresh]}, repeat "
                         f"{[d['carried'] for d in repeat]} (expected 0 and {expected})")
    report = {
        "preset": args.preset, "pairs_per_day": args.ads * args.queries_per_ad, "repeat_share": args.repeat_share,
        "rounds": args.rounds,
        "repeat_over_fresh": spread([r["seconds"] / f["seconds"] for f, r in zip(fresh, repeat)]),
        "repeat_over_fresh_scoring_stage": spread([r["stage_seconds"] / f["stage_seconds"]
                                                   for f, r in zip(fresh, repeat)]),
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
