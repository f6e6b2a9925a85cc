"""Our Spark job against the stock ways to run the same model on Spark, and against the plain engine.

    make bench-compare                                    # 40,000 pairs: 1,000 ads x 40 queries
    make bench-compare PAIRS=1000000 REPEAT_SHARE=0.8     # --pairs N --repeat-share S

--pairs N sets the day's size (N / --queries-per-ad ads). --repeat-share S makes it a repeat day: before
the rounds, the day before holds the first S of every ad's queries (of the same ads and videos), and the job
scores it once (untimed); the job then carries those pairs over (the `carry_over_days` of score.yaml)
while the stock paths and the plain engine, which keep no scores, score the whole day every time.

One synthetic day (benchmarks/scoring_scale.synthetic_day: the sample's real titles/OCR/ASR and queries,
0-4 small JPEG frames per video) with --queries-per-ad queries for each of --ads ads, written as the
job's Delta tables (benchmarks/scoring_spark_overhead.write_lake; `video_texts` built once, upstream).
One random-weight model (--preset, --text-attention: speed does not depend on training), the same
weights for all four contenders, each reading the same tables and writing its scores:
- spark_job: `jobs.score.score_date`, the whole `hcmrm score` of the day (validation, ad-major rows,
  mapInArrow scoring, relevance_scores + scoring_rejects in Delta, counts reconciled, MLflow run);
- mlflow_spark_udf: the pairs joined to their ad, video and video text (one video per pair), scored by
  `mlflow.pyfunc.spark_udf` over the shipped pyfunc flavor (hcmrm.tracking.pyfunc), written as Parquet;
- predict_batch_udf: the same join, scored by `pyspark.ml.functions.predict_batch_udf` around
  Scorer.score_pairs (what a user writes), written as Parquet. The stock paths run as a user runs them,
  torch at its default thread count;
- plain: the engine in as many processes as Spark has Python workers, one torch thread each, each
  reading its share of the ads from the same Parquet files, grouping by ad, scoring, writing Parquet.
A warm-up round on a small day after DATE (--warm-up-ads ads again: JVM, Python workers with torch and
the model, the job's tables), then --rounds rounds of DATE, the contenders' order rotating each round.
Every contender's scores must equal the job's to 1e-4 (else exit 1). Prints each contender's median
seconds and spread, the per-round ratios, and as the last line one JSON object: spark_over_plain,
over_mlflow_spark_udf, over_predict_batch_udf (medians of the per-round pairs/s ratios) and
flop_per_pair_full / flop_per_pair_cached (hcmrm.model.flops: `base`, query 32, text 128 tokens,
4 frames, per-ad work shared by --queries-per-ad pairs).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from scoring_engine import group_ads  # noqa: E402
from scoring_scale import DATE, synthetic_day  # noqa: E402

TOLERANCE = 1e-4
KEY = ["query", "ad_id"]


# --- plain: the engine in worker processes, Parquet in and out ----------------------------------

_PLAIN: dict = {}


def plain_init(model_dir: str) -> None:
    """One Scorer per process, one torch thread (as the job's Python workers), warmed up once."""
    import torch

    from hcmrm.scoring import Scorer
    from jobs.model_shipping import canary_batch

    torch.set_num_threads(1)
    _PLAIN["scorer"] = Scorer.from_dir(model_dir)
    _PLAIN["scorer"].score(canary_batch())


def plain_shard(task: tuple) -> int:
    """Score the ads of `date` whose id hashes to `shard` from the lake's Parquet files; write them to `out`."""
    lake, date, shard, shards, out = task
    day = f"dt={date}"  # the day's partition: Delta's files carry the dt column themselves
    pairs = pd.read_parquet(Path(lake, "query_ad_pairs", day))
    pairs = pairs[pd.util.hash_array(pairs.ad_id.to_numpy(dtype=object)) % shards == shard]
    ads = pd.read_parquet(Path(lake, "ads"))
    videos = pd.read_parquet(Path(lake, "videos", day))
    texts = pd.read_parquet(Path(lake, "video_texts", day))
    grouped = group_ads(pairs, ads, videos, dict(zip(texts.video_id, texts.video_text)))
    results = _PLAIN["scorer"].score(grouped)
    scored = [(q, ad.ad_id, s) for ad, r in zip(grouped, results) if r.reason is None
              for q, s in zip(ad.queries, r.score)]
    frame = pd.DataFrame(scored, columns=[*KEY, "score"])
    frame.to_parquet(Path(out, f"part-{shard}.parquet"))
    return len(frame)


def plain_run(pool, lake: str, date: str, shards: int, out: Path) -> pd.DataFrame:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    pool.map(plain_shard, [(lake, date, i, shards, str(out)) for i in range(shards)])
    return pd.read_parquet(out)


# --- the stock Spark paths: one video per pair ------------------------------------------------------


def pairs_with_videos(spark, settings, date: str):
    """The date's pairs, each with its video's text and frames: the input a user hands a per-row UDF."""
    from pyspark.sql import functions as F

    def table(name):
        return spark.read.format("delta").load(settings.table(name))

    day = F.col("dt") == date
    return (table("query_ad_pairs").where(day).select(*KEY)
            .join(table("ads").select("ad_id", "video_id"), "ad_id")
            .join(table("videos").where(day).select("video_id", "frames"), "video_id")
            .join(table("video_texts").where(day).select("video_id", "video_text"), "video_id"))


def mlflow_udf(spark, pyfunc_dir: Path):
    import mlflow.pyfunc

    from hcmrm.tracking.pyfunc import RESULT_TYPE

    return mlflow.pyfunc.spark_udf(spark, str(pyfunc_dir), result_type=RESULT_TYPE)


def batch_udf(model_dir: str, batch_size: int):
    """predict_batch_udf around the engine, as its docs show: a loader returning a function of numpy columns."""
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql.pandas.types import from_arrow_schema

    from hcmrm.tables import PREDICTION

    def make_predict_fn():
        from hcmrm.scoring import Scorer

        scorer = Scorer.from_dir(model_dir)

        def predict(queries, texts, frames):
            videos = [[bytes(f) for f in v] if v is not None else None for v in frames]
            probs, score = scorer.score_pairs(list(queries), list(texts), videos)
            columns = {f.name: probs[:, i].astype(np.float64) for i, f in enumerate(list(PREDICTION)[:4])}
            return {**columns, "score": score.astype(np.float64), "label": probs.argmax(axis=1).astype(np.int32)}

        return predict

    # input_tensor_shapes None: the frames column is ragged (0-4 frames), passed through as it is.
    return predict_batch_udf(make_predict_fn, return_type=from_arrow_schema(PREDICTION), batch_size=batch_size,
                             input_tensor_shapes=[None, None, None])


def stock_run(spark, frame, udf, out: Path) -> pd.DataFrame:
    scored = frame.select(*KEY, udf("query", "video_text", "frames").alias("prediction"))
    scored.write.mode("overwrite").parquet(str(out))
    back = pd.read_parquet(out, columns=[*KEY, "prediction"])
    return back.assign(score=[p["score"] for p in back.prediction]).drop(columns="prediction")


# --- our job ------------------------------------------------------------------------------------------


JOB_CARRIED: dict[str, int] = {}  # date -> pairs the job's last run of it carried over


def job_run(spark, settings, config, model, experiment, date: str = DATE) -> pd.DataFrame:
    """`hcmrm score` of `date` as the command runs it (its Arrow batch bounds, for the job only); its scores."""
    from pyspark.sql import functions as F

    from jobs.score import score_date
    from jobs.session import arrow_batches

    with arrow_batches(spark, config.arrow_batch, config.pairs_per_row), contextlib.redirect_stderr(io.StringIO()):
        result = score_date(spark, settings, config, date, model, experiment)
    JOB_CARRIED[date] = result.carried_pairs
    rows = spark.read.format("delta").load(settings.table("relevance_scores"))
    return rows.where(F.col("scoring_run_id") == result.run_id).select(*KEY, "score").toPandas()


def shifted(date: str, days: int) -> str:
    import datetime as dt

    return (dt.date.fromisoformat(date) + dt.timedelta(days=days)).isoformat()


WARM_UP_DATE = shifted(DATE, 1)  # after DATE: the job's carry-over only looks back


def warm_up_day(pairs: pd.DataFrame, ads: pd.DataFrame, videos: pd.DataFrame,
                n: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(pairs, ads, videos) of the untimed warm-up day, WARM_UP_DATE: the first `n` ads again,
    under new ad and video ids (a video_id is unique across `videos`). Each contender's warm-up (JVM,
    Python workers, model loads, the job's Delta tables) then costs a slice of the day, not a whole
    round; no score of it is reused for DATE."""
    def renamed(column):
        return column + "-warm"

    first = ads.iloc[:n]
    warm_pairs = pairs[pairs.ad_id.isin(first.ad_id)]
    warm_videos = videos[videos.video_id.isin(first.video_id)]
    return (warm_pairs.assign(dt=WARM_UP_DATE, ad_id=renamed(warm_pairs.ad_id)),
            first.assign(ad_id=renamed(first.ad_id), video_id=renamed(first.video_id)),
            warm_videos.assign(dt=WARM_UP_DATE, video_id=renamed(warm_videos.video_id)))


def day_before(pairs: pd.DataFrame, share: float) -> pd.DataFrame:
    """The pairs of the day before DATE: the first `share` of each ad's queries (the videos are the same rows)."""
    before = shifted(DATE, -1)
    rank = pairs.groupby("ad_id").cumcount()
    return pairs[rank < (pairs.groupby("ad_id")["query"].transform("size") * share).round()].assign(dt=before)


# --- rounds, checks, report ---------------------------------------------------------------------------


def max_difference(reference: pd.DataFrame, other: pd.DataFrame) -> float:
    """Largest |score difference| over the job's pairs; inf when one of them is missing. Rows the job
    rejected (it scores no invalid or duplicate pair; a per-row UDF scores every row) are counted apart."""
    joined = reference.merge(other.drop_duplicates(KEY), on=KEY, how="left", suffixes=("", "_other"))
    if joined["score_other"].isna().any():
        return float("inf")
    return float((joined.score - joined.score_other).abs().max())


def rows_beyond_the_job(reference: pd.DataFrame, other: pd.DataFrame) -> int:
    """Rows of `other` that are not one of the job's scored pairs (the day's rejected or duplicate rows)."""
    return len(other) - len(other.merge(reference[KEY], on=KEY))


def rounds(contenders: dict, n: int) -> tuple[dict, dict]:
    """A warm-up run of each on WARM_UP_DATE, then `n` timed rounds of DATE, the order rotating;
    (seconds per contender, DATE's outputs). Each contender is a function of the date."""
    names, seconds, outputs = list(contenders), {name: [] for name in contenders}, {}
    for name in names:
        contenders[name](WARM_UP_DATE)
    for r in range(n):
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            outputs[name] = contenders[name](DATE)
            seconds[name].append(time.perf_counter() - start)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in seconds.items()), flush=True)
    return seconds, outputs


def flop_keys(queries_per_ad: int) -> dict:
    """Amortised FLOP per pair of `base` at its length limits, full and cached (hcmrm/model/flops.py)."""
    import torch

    from hcmrm.model.flops import pair_flops
    from hcmrm.model.network import build_model

    torch.manual_seed(0)
    full = build_model("base", max_frames=4).eval()
    cached = build_model("base", max_frames=4, text_attention="cached").eval()
    row = pair_flops(full, cached, full.config.max_query_len, full.config.max_text_len, 4, queries_per_ad)
    return {"flop_per_pair_full": round(row.full_amortised), "flop_per_pair_cached": round(row.cached_amortised)}


def summary(seconds: dict, pairs: int, differences: dict) -> dict:
    for name, runs in seconds.items():
        print(f"{name:18s} median {statistics.median(runs):7.2f} s  spread {min(runs):.2f}-{max(runs):.2f} s  "
              f"{pairs / statistics.median(runs):8.1f} pairs/s  max |score diff| vs job {differences[name]:.2e}")
    ratios = {}
    for key, other in (("spark_over_plain", "plain"), ("over_mlflow_spark_udf", "mlflow_spark_udf"),
                       ("over_predict_batch_udf", "predict_batch_udf")):
        per_round = [o / j for j, o in zip(seconds["spark_job"], seconds[other])]  # pairs/s ratio = time ratio
        ratios[key] = round(statistics.median(per_round), 3)
        print(f"{key:24s} median {ratios[key]:.3f}  rounds {[round(x, 3) for x in per_round]}")
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", help="model preset: tiny, small, base")
    parser.add_argument("--text-attention", default="cached", choices=["full", "cached"])
    parser.add_argument("--ads", type=int, default=1000)
    parser.add_argument("--pairs", type=int, help="the day's size: --pairs / --queries-per-ad ads (overrides --ads)")
    parser.add_argument("--repeat-share", type=float, default=0.0,
                        help="share of the day's pairs scored the day before (0: a fresh day)")
    parser.add_argument("--queries-per-ad", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warm-up-ads", type=int, default=200, help="ads of the untimed warm-up day")
    parser.add_argument("--batch-size", type=int, default=1024, help="predict_batch_udf's batch_size")
    parser.add_argument("--profile", default="local", help="Spark profile (conf/spark)")
    args = parser.parse_args()
    if args.pairs:
        args.ads = max(1, args.pairs // args.queries_per_ad)
    if args.rounds < 1 or args.warm_up_ads < 1:
        parser.error("--rounds and --warm-up-ads are at least 1")
    if not 0 <= args.repeat_share < 1:
        parser.error("--repeat-share is a share of the day's pairs: 0 <= S < 1")

    from hcmrm.config import load
    from hcmrm.settings import Settings
    from hcmrm.tracking.pyfunc import save_pyfunc
    from hcmrm.tracking.store import use_experiment
    from jobs.scoring_config import CONF_FILE, ScoreJobConfig
    from jobs.session import spark_session
    from scoring_engine import video_texts
    from scoring_spark_overhead import job_model, register, write_lake

    root = Path(tempfile.mkdtemp(prefix="hcmrm-compare-"))
    synthetic_day(args.ads * args.queries_per_ad, root / "day", sizes=np.full(args.ads, args.queries_per_ad))
    pairs, ads, videos = (pd.read_parquet(root / "day" / f"{n}.parquet") for n in ("query_ad_pairs", "ads", "videos"))
    settings = Settings(lake=str(root / "lake"), tracking_uri=f"sqlite:///{root / 'mlruns.db'}",
                        artifact_root=str(root / "mlartifacts"), model_name="bench", spark_profile=args.profile)
    register(settings, args.preset, root, text_attention=args.text_attention)
    spark = spark_session(args.profile, app_name="hcmrm-bench-compare")
    workers = spark.sparkContext.defaultParallelism
    before_pairs = day_before(pairs, args.repeat_share)
    warm_pairs, warm_ads, warm_videos = warm_up_day(pairs, ads, videos, args.warm_up_ads)
    all_videos = pd.concat([videos, warm_videos], ignore_index=True)
    write_lake(spark, settings, pd.concat([pairs, before_pairs, warm_pairs]), pd.concat([ads, warm_ads]),
               all_videos, video_texts(all_videos))
    config = load(ScoreJobConfig, CONF_FILE)
    experiment = use_experiment(settings, config.experiment)
    model = job_model(spark, settings, config)
    if args.repeat_share:  # the day before, scored once by the job: what the repeat day carries over
        job_run(spark, settings, config, model, experiment, before_pairs.dt.iloc[0])
    pyfunc_dir = save_pyfunc(model.local_dir, root / "pyfunc")
    m_udf, b_udf = mlflow_udf(spark, pyfunc_dir), batch_udf(model.local_dir, args.batch_size)

    def job(date):
        return job_run(spark, settings, config, model, experiment, date)

    def stock(name, udf):
        return lambda date: stock_run(spark, pairs_with_videos(spark, settings, date), udf, root / "out" / name)

    context = {"preset": args.preset, "text_attention": args.text_attention, "ads": args.ads,
               "repeat_share": args.repeat_share, "pairs_scored_before": len(before_pairs),
               "queries_per_ad": args.queries_per_ad, "warm_up_pairs": len(warm_pairs), "python_workers": workers,
               "lake": str(root), "load_average_before": round(os.getloadavg()[0], 1)}
    print(json.dumps(context), flush=True)
    with multiprocessing.get_context("spawn").Pool(workers, plain_init, (model.local_dir,)) as pool:
        seconds, outputs = rounds({
            "spark_job": job,
            "mlflow_spark_udf": stock("mlflow_spark_udf", m_udf),
            "predict_batch_udf": stock("predict_batch_udf", b_udf),
            "plain": lambda date: plain_run(pool, settings.lake, date, workers, root / "out" / "plain"),
        }, args.rounds)
    spark.stop()
    differences = {name: max_difference(outputs["spark_job"], out) for name, out in outputs.items()}
    beyond = {name: rows_beyond_the_job(outputs["spark_job"], out) for name, out in outputs.items()}
    print(f"rows scored beyond the job's pairs (rows it rejected): {beyond}", flush=True)
    ratios = summary(seconds, len(outputs["spark_job"]), differences)
    print(f"load average after {os.getloadavg()[0]:.1f}; pairs {len(outputs['spark_job'])}, of which the job carried "
          f"{JOB_CARRIED.get(DATE, 0)} over", flush=True)
    print(json.dumps({**ratios, **flop_keys(args.queries_per_ad)}))
    if max(differences.values()) > TOLERANCE:
        sys.exit(f"scores differ from the job's by more than {TOLERANCE}: {differences}")


if __name__ == "__main__":
    main()
