"""Titles/s of the pseudo-queries Spark job against the same extraction in a plain Python loop.

Input: N real headlines (THUCNews dev + test, then TNEWS; default 20,000 = THUCNews only) as a `videos` table
with no OCR, ASR or frames, one dt. Both sides do the same work: corpus IDF (every title
tokenized once to count document frequencies), then for every title the pseudo-query, context
text and keyword sequence (`hcmrm.text.pseudo_query.pretrain_text`, a second tokenization).

- Spark: `jobs.pseudo_queries.build` on the `local` profile (local[*]: one Python worker per core),
  the whole job as scheduled: read Parquet, IDF aggregate written to Delta, pairs and rejects
  written to Delta, counts reconciled and read back. Also the transforms alone, into Spark's
  `noop` sink (no Delta), to show what the writes cost.
- Loop: one Python process, pandas reads the same Parquet, then a for loop.

Warm-up first (JVM, Python workers with jieba loaded, jieba in this process), then one timed run
of each. The ratio is Spark titles/s over loop titles/s: Spark's `cores` workers against one
process, so on 2 cores the ideal is about 2 and the target is >= 0.9. The machine is shared:
the load average is printed before and after.

    .venv/bin/python benchmarks/pseudo_query_throughput.py [--n 20000] [--data /work/shared/data]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = Path("/work/shared/data")
DT = "2024-09-01"


def titles(data: Path, n: int) -> list[str]:
    out = []
    for split in ("dev", "test"):
        out += [line.split("\t")[0] for line in (data / "thucnews_titles" / f"{split}.txt").open(encoding="utf-8")]
    for split in ("dev", "test"):
        out += [json.loads(line)["sentence"] for line in (data / "tnews_keywords" / f"{split}.json").open(encoding="utf-8")]
    if len(out) < n:
        raise SystemExit(f"only {len(out)} titles available, asked for {n}")
    return out[:n]


def write_videos(path: str, texts: list[str]) -> None:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = pd.DataFrame(
        {
            "video_id": [f"t{i:06d}" for i in range(len(texts))],
            "title": texts,
            "ocr_text": None,
            "asr_text": None,
            "frames": [[] for _ in texts],
            "dt": DT,
        }
    )
    schema = pa.schema(
        [
            ("video_id", pa.string()),
            ("title", pa.string()),
            ("ocr_text", pa.string()),
            ("asr_text", pa.string()),
            ("frames", pa.list_(pa.binary())),
            ("dt", pa.string()),
        ]
    )
    pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), path)


def python_loop(path: str, config) -> int:
    """The same extraction, one process: IDF over the titles, then every pair."""
    import pandas as pd

    from hcmrm.text.keywords import Idf
    from hcmrm.text.pseudo_query import PretrainText, pretrain_text, video_text

    rows = pd.read_parquet(path)
    kw = config.keywords
    idf = Idf.from_documents((video_text(t, o, a, kw.max_text_chars) for t, o, a in
                              zip(rows.title, rows.ocr_text, rows.asr_text)), kw)
    pairs = 0
    for video_id, title, ocr, asr in zip(rows.video_id, rows.title, rows.ocr_text, rows.asr_text):
        result = pretrain_text(video_id, title, ocr, asr, idf, kw, config.seed, config.max_sequence_chars)
        pairs += isinstance(result, PretrainText)
    return pairs


def spark_transforms(spark, path: str, config) -> None:
    """The job's transforms without Delta: IDF aggregate collected, pairs into the noop sink."""
    from pyspark.sql import functions as F

    from jobs import pseudo_queries as job

    videos = job.spread(job.read_videos(spark, path), config.partitions)
    valid = job.flag_keys(videos).where(F.col("key_problem").isNull())
    counts = job.term_counts(valid, config.keywords).persist()  # as the job does: tokenize once
    counts.count()
    idf = job.idf_from_table(job.idf_table(counts, config.keywords.min_df), config.keywords.min_df)
    counts.unpersist()
    broadcast = spark.sparkContext.broadcast(idf)
    results = job.pretrain_results(videos, broadcast, config.keywords, config.seed, config.max_sequence_chars)
    results.write.format("noop").mode("overwrite").save()
    broadcast.unpersist()


def _proc_cpu() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of it and its reaped children) for every process we can read."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the command name: state ppid ... utime(14) stime(15) cutime(16) cstime(17), 1-based in stat
        out[int(entry)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / tick)
    return out


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by `root` and all its descendants (the Spark JVM and its Python workers)."""
    procs = _proc_cpu()
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _) in procs.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sum(procs[p][1] for p in tree if p in procs)


def timed(fn, *args, jvm: int | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of fn(*args): this process, plus the JVM's process tree when given."""
    wall, cpu = time.perf_counter(), time.process_time()
    tree = tree_cpu(jvm) if jvm else 0.0
    fn(*args)
    cpu = time.process_time() - cpu + ((tree_cpu(jvm) - tree) if jvm else 0.0)
    return time.perf_counter() - wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="titles to process")
    parser.add_argument("--warmup", type=int, default=2000, help="titles in the warm-up runs")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--profile", default="local", help="Spark profile (conf/spark)")
    args = parser.parse_args()

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from hcmrm.text.keywords import init_jieba
    from hcmrm.settings import Settings
    from jobs import pseudo_queries as job
    from jobs.session import spark_session

    config = job.JobConfig.load()
    texts = titles(args.data, args.n)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="pq-bench-") as tmp:
        full, warm = f"{tmp}/videos.parquet", f"{tmp}/warm.parquet"
        write_videos(full, texts)
        write_videos(warm, texts[: args.warmup])
        settings = Settings(lake=f"{tmp}/lake", tracking_uri=f"sqlite:///{tmp}/mlruns.db",
                            artifact_root=f"{tmp}/mlartifacts", spark_profile=args.profile)
        spark = spark_session(args.profile, {"spark.ui.enabled": "false"}, app_name="hcmrm-bench-pseudo-query")
        cores = spark.sparkContext.defaultParallelism

        # Warm-up: JVM, Delta, Python workers (jieba loaded once each); jieba in this process.
        job.build(spark, settings, warm, None, config)
        spark_transforms(spark, warm, config)
        init_jieba()
        python_loop(warm, config)

        jvm = spark.sparkContext._gateway.proc.pid  # the spark-submit/JVM process; Python workers are below it
        loop_s, loop_cpu = timed(python_loop, full, config)
        transforms_s, transforms_cpu = timed(spark_transforms, spark, full, config, jvm=jvm)
        job_s, job_cpu = timed(job.build, spark, settings, full, [DT], config, jvm=jvm)
        spark.stop()
    load_after = os.getloadavg()

    n = args.n
    rows = [("python loop, 1 process", loop_s, loop_cpu),
            (f"spark transforms -> noop, {cores} workers", transforms_s, transforms_cpu),
            (f"spark job (build, Delta writes), {cores} workers", job_s, job_cpu)]
    sources = "THUCNews dev + test" + (" + TNEWS" if n > 20000 else "")
    print(f"pseudo-query throughput: {n:,} titles ({sources}), hmm={config.keywords.hmm}, "
          f"{os.cpu_count()} CPUs, Spark profile {args.profile!r} with {cores} cores")
    print(f"  {'':<48}{'wall s':>8} {'titles/s':>9} {'CPU s':>8} {'CPU ms/title':>13}")
    for name, seconds, cpu in rows:
        print(f"  {name:<48}{seconds:8.1f} {n / seconds:9.0f} {cpu:8.1f} {1000 * cpu / n:13.2f}")
    print(f"  ratio spark job / loop        = {loop_s / job_s:.2f}  (wall-clock titles/s; target >= 0.9)")
    print(f"  ratio spark transforms / loop = {loop_s / transforms_s:.2f}")
    # On a shared machine wall time depends on the neighbours; CPU time does not (much). If each side
    # had its cores to itself: loop wall = its CPU time, Spark wall >= its CPU time / cores.
    print(f"  CPU-based bound, spark job / loop = {loop_cpu * cores / job_cpu:.2f} "
          f"(loop CPU x {cores} cores / Spark CPU: the ratio on an idle machine with perfect spreading)")
    print(f"  load average (1, 5, 15 min) before {tuple(round(x, 1) for x in load_before)}, "
          f"after {tuple(round(x, 1) for x in load_after)}")


if __name__ == "__main__":
    main()
