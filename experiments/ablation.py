"""The paper's ablation on public data: does pre-training (and PQVM) and the hierarchical softmax help?

    make ablation        # = .venv/bin/python experiments/ablation.py  (settings: conf/train/ablation.yaml)

On KUAKE-QTR (train -> dev), per seed:
  a  no pre-training + BCE
  b  no pre-training + hierarchical softmax
  c  ALBEF-style pre-training (ITC + ITM + MLM) + hierarchical softmax
  d  HCMRM pre-training (ITC + ITM + MLM + PQVM) + hierarchical softmax
next to the character-overlap baseline; then the best configuration's models on QBQTC dev.
Pre-training text never includes a KUAKE-QTR dev or QBQTC dev title: KUAKE-QTR train titles,
QBQTC v0 titles, THUCNews and TNEWS headlines, Bilibili titles + descriptions, and the Flickr8k-CN
captions with their photos (the only items with frames: ITC and ITM see those).

Each finished run writes experiments/results/ablation/<run>.json at once and is skipped on a
rerun, so a cut-off keeps what was done and the same command continues; the table is rewritten
(experiments/results/ablation_table.md, summary.json) after every run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from experiments.char_overlap import evaluate_file as char_overlap_metrics  # noqa: E402
from hcmrm.config import from_dict, merge, to_dict  # noqa: E402
from hcmrm.model.checkpoint import load_model  # noqa: E402
from hcmrm.train.finetune import FinetuneConfig, evaluate, finetune  # noqa: E402
from hcmrm.train.labeled_data import build_texts, read_labeled, to_examples  # noqa: E402
from hcmrm.train.pretrain import PretrainConfig, examples_from_records, pretrain  # noqa: E402

log = logging.getLogger("ablation")

DATA = REPO.parent / "shared" / "data"
CONFIG_FILE = REPO / "conf" / "train" / "ablation.yaml"
RESULTS = REPO / "experiments" / "results"
CACHE = REPO / ".cache" / "ablation"  # the pre-training corpus and each results folder's checkpoints (not committed)

RUN_FILE = re.compile(r"^[abcd](-\d+ep)?-seed\d+\.json$")  # one fine-tuning run's record
CONFIGS = {
    "a": {"title": "no pre-training + BCE", "pretrain": None, "loss": "bce"},
    "b": {"title": "no pre-training + hierarchical softmax", "pretrain": None, "loss": "hierarchical_softmax"},
    "c": {"title": "ALBEF pre-training (ITC+ITM+MLM) + hierarchical", "pretrain": "albef", "loss": "hierarchical_softmax"},
    "d": {"title": "HCMRM pre-training (+PQVM) + hierarchical", "pretrain": "hcmrm", "loss": "hierarchical_softmax"},
}
PRETRAIN_WEIGHTS = {
    "albef": {"itc": 1.0, "itm": 1.0, "mlm": 1.0, "pqvm": 0.0},
    "hcmrm": {"itc": 1.0, "itm": 1.0, "mlm": 1.0, "pqvm": 1.0},
}


# --- data ----------------------------------------------------------------------------------------


def _json_lines(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def corpus_rows(data: Path, caps: dict[str, int], seed: int = 0) -> list[dict]:
    """Pre-training texts (source, id, text, frames) from the public sets, minus every dev title."""
    held_out = {r["title"] for r in json.loads((data / "kuake_qtr" / "KUAKE-QTR_dev.json").read_text("utf-8"))}
    held_out |= {r["title"] for r in _json_lines(data / "qbqtc" / "dev.json")}
    rng = random.Random(seed)
    sources: dict[str, list[tuple[str, list[bytes] | None]]] = {}

    kuake = json.loads((data / "kuake_qtr" / "KUAKE-QTR_train.json").read_text("utf-8"))
    sources["kuake_train_titles"] = [(t, None) for t in dict.fromkeys(r["title"] for r in kuake)]
    qbqtc = _json_lines(data / "qbqtc_v0_listwise" / "train.json") + _json_lines(data / "qbqtc_v0_listwise" / "dev.json")
    sources["qbqtc_v0_titles"] = [(t, None) for t in dict.fromkeys(r["title"] for r in qbqtc)]
    thuc = []
    for name in ("dev.txt", "test.txt"):
        for line in (data / "thucnews_titles" / name).read_text("utf-8").splitlines():
            if line.strip():
                thuc.append((line.rsplit("\t", 1)[0], None))
    sources["thucnews_titles"] = thuc
    sources["tnews"] = [
        (r["sentence"], None) for n in ("dev.json", "test.json") for r in _json_lines(data / "tnews_keywords" / n)
    ]
    bili = []
    for r in _json_lines(data / "bilibili_top100_titles" / "videos_dedup.jsonl"):
        desc = r.get("desc") or ""
        text = r["title"] if desc in ("", "-", "Not Found") else f"{r['title']} {desc[:200]}"
        bili.append((text, None))
    sources["bilibili"] = bili
    flickr = []
    for r in _json_lines(data / "flickr8k_cn_1k" / "captions.jsonl"):
        image = (data / "flickr8k_cn_1k" / r["image"]).read_bytes()
        for caption in r["zh_human"][:2]:
            flickr.append((caption, [image]))
    sources["flickr8k_cn"] = flickr

    rows = []
    for source, items in sources.items():
        items = [it for it in items if it[0] and it[0] not in held_out]
        rng.shuffle(items)
        for i, (text, frames) in enumerate(items[: caps.get(source, len(items))]):
            rows.append({"source": source, "id": f"{source}-{i}", "text": text, "frames": frames})
    return rows


def pretrain_frame(data: Path, caps: dict[str, int], seed: int = 0) -> pd.DataFrame:
    """The corpus as `pretrain_pairs` rows (pseudo-query, context, frames); cached under WORK."""
    from hcmrm.text.pseudo_query import Idf, init_jieba, make_pseudo_query, video_seed

    key = "-".join(f"{k}{v}" for k, v in sorted(caps.items()))
    cache = CACHE / f"pretrain_corpus_seed{seed}_{key}.parquet"
    if cache.exists():
        return pd.read_parquet(cache)
    init_jieba()
    rows = corpus_rows(data, caps, seed)
    texts = [r["text"] for r in rows]
    idf = Idf.from_documents(texts)
    out = []
    for r in rows:
        pq = make_pseudo_query(r["text"], idf, seed=video_seed(seed, r["id"]))
        if pq is not None and pq.context_text:
            out.append({"video_id": r["id"], "source": r["source"], "pseudo_query": pq.pseudo_query,
                        "context_text": pq.context_text, "frames": r["frames"]})
    frame = pd.DataFrame(out)
    CACHE.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(cache)
    log.info("pre-training corpus: %d rows of %d texts %s", len(frame), len(rows), frame["source"].value_counts().to_dict())
    return frame


def labeled_examples(path: Path, limit: int | None = None):
    pairs = read_labeled(path).pairs
    if limit:
        pairs = pairs.sample(n=min(limit, len(pairs)), random_state=0)
    from jobs.pseudo_queries import JobConfig  # how video texts are built (titles only here: the bound matters)

    return to_examples(build_texts(pairs, settings=JobConfig.load().text_settings()))


# --- runs ----------------------------------------------------------------------------------------


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def pretrained_model_dir(kind: str, seed: int, settings: dict, corpus: pd.DataFrame, results: Path) -> Path:
    """Pre-train once per (objective, seed); a finished one is reused, an interrupted one resumed."""
    out = CACHE / results.name / f"pretrain-{kind}-seed{seed}"
    record = results / f"pretrain-{kind}-seed{seed}.json"
    if (out / "model" / "config.json").exists() and record.exists():
        return out / "model"
    overrides = {"model": settings["model"], "weights": PRETRAIN_WEIGHTS[kind], "loop.seed": seed}
    config = from_dict(PretrainConfig, merge(settings["pretrain"], overrides))
    examples = examples_from_records(corpus)
    losses: list[dict] = []
    log = _progress_log(f"pretrain-{kind}-seed{seed}", losses)
    result = pretrain(examples, config, out, log_metrics=log, progress=False)
    _write_json(record, {"kind": kind, "seed": seed, "steps": result.loop.steps, "seconds": round(result.loop.seconds, 1),
                         "examples": len(examples), "config": to_dict(config), "losses": losses})
    return result.model_dir


def _progress_log(run: str, into: list[dict]):
    """log_metrics for a loop: keep each record, and print one line per log interval (the worker processes
    share the terminal, so a line each, not progress bars)."""
    started = time.time()
    print(f"[ablation] {run}: started", flush=True)

    def log(metrics: dict, step: int) -> None:
        into.append({"step": step, **metrics})
        shown = "".join(f", {name} {metrics[key]:.3f}" for key, name in (("train/loss", "loss"), ("dev/auc", "dev AUC"))
                        if isinstance(metrics.get(key), float))
        print(f"[ablation] {run}: step {step}{shown}, {time.time() - started:.0f} s", flush=True)

    return log


def run_key(name: str, epochs: int | None) -> str:
    """A configuration, or its variant with longer fine-tuning: "d", "d-2ep"."""
    return name if epochs is None else f"{name}-{epochs}ep"


def finetune_run(name: str, spec: dict, seed: int, settings: dict, train, dev, init: Path | None, results: Path,
                 epochs: int | None = None) -> dict:
    overrides = {"model": settings["model"], "loss": spec["loss"], "loop.seed": seed, "loop.epochs": epochs or None}
    config = from_dict(FinetuneConfig, merge(settings["finetune"], overrides))
    key = run_key(name, epochs)
    out = CACHE / results.name / f"finetune-{key}-seed{seed}"
    curve: list[dict] = []
    result = finetune(train, dev, config, out, init=init, log_metrics=_progress_log(f"finetune-{key}-seed{seed}", curve),
                      progress=False)
    title = spec["title"] + (f", {epochs} fine-tuning epochs" if epochs else "")
    record = {
        "config": key, "base": name, "title": title, "seed": seed, "dev": result.metrics, "history": result.history,
        "steps": result.loop.steps, "seconds": round(result.loop.seconds, 1), "model_dir": str(result.model_dir),
        "init": str(init) if init else None, "finetune_config": to_dict(config), "curve": curve,
    }
    _write_json(results / f"{key}-seed{seed}.json", record)
    return record


# --- the table -----------------------------------------------------------------------------------


def _mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def write_table(results: Path, baseline: dict, qbqtc: dict | None, settings: dict) -> str:
    runs = [json.loads(p.read_text("utf-8")) for p in sorted(results.glob("*-seed*.json"))
            if RUN_FILE.match(p.name)]
    lines = [
        "| config | KUAKE-QTR dev AUC | Spearman | accuracy | seeds | per-seed AUC |",
        "|---|---|---|---|---|---|",
        f"| character overlap (no training) | {baseline['auc']:.3f} | {baseline['spearman']:.3f} | "
        f"{baseline['accuracy']:.3f} | - | - |",
    ]
    summary = {"baseline_kuake_dev": baseline, "configs": {}}
    keys = list(CONFIGS) + sorted({r["config"] for r in runs} - set(CONFIGS))
    for name in keys:
        mine = [r for r in runs if r["config"] == name]
        if not mine:
            continue
        spec = {"title": mine[0]["title"]}
        aucs = [r["dev"]["auc"] for r in mine]
        rhos = [r["dev"]["spearman"] for r in mine]
        accs = [r["dev"]["accuracy"] for r in mine]
        lines.append(
            f"| ({name}) {spec['title']} | {_mean_std(aucs)} | {_mean_std(rhos)} | {_mean_std(accs)} | "
            f"{len(mine)} | {', '.join(f'{a:.3f}' for a in aucs)} |"
        )
        summary["configs"][name] = {"title": spec["title"], "seeds": [r["seed"] for r in mine], "auc": aucs,
                                    "spearman": rhos, "accuracy": accs,
                                    "mean_auc": statistics.mean(aucs), "mean_spearman": statistics.mean(rhos)}
    if qbqtc:
        summary["qbqtc_dev"] = qbqtc
        lines += [
            "",
            f"QBQTC dev ({qbqtc['n']} pairs, positive = label 2), best config ({qbqtc['config']}) trained on KUAKE-QTR:",
            "",
            "| model | AUC | Spearman | accuracy |",
            "|---|---|---|---|",
            f"| character overlap | {qbqtc['baseline']['auc']:.3f} | {qbqtc['baseline']['spearman']:.3f} | "
            f"{qbqtc['baseline']['accuracy']:.3f} |",
            f"| ({qbqtc['config']}) {summary['configs'][qbqtc['config']]['title']} | {_mean_std(qbqtc['auc'])} | "
            f"{_mean_std(qbqtc['spearman'])} | {_mean_std(qbqtc['accuracy'])} |",
        ]
    summary["settings"] = settings
    table = "\n".join(lines) + "\n"
    (results.parent / "ablation_table.md").write_text(table, encoding="utf-8")
    _write_json(results.parent / "ablation_summary.json", summary)
    return table


def run_workers(common: list[str], seeds: list[int], workers: int) -> None:
    """This script once per share of the seeds, side by side; waits for all of them."""
    procs = [subprocess.Popen([sys.executable, __file__, *common, "--seeds", *map(str, seeds[w::workers])])
             for w in range(workers)]
    codes = [p.wait() for p in procs]
    if any(codes):
        log.error("a worker failed (exit codes %s); the table shows what finished", codes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="HCMRM ablation on KUAKE-QTR (+ QBQTC dev)")
    parser.add_argument("--config", default=str(CONFIG_FILE), help="YAML with model, pretrain, finetune settings")
    parser.add_argument("--data", default=str(DATA), help="the public data folder (../shared/data)")
    parser.add_argument("--results", default=str(RESULTS / "ablation"), help="one JSON per finished run")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--seeds", nargs="+", type=int, help="override the YAML's seeds")
    parser.add_argument("--no-qbqtc", action="store_true", help="skip the QBQTC dev evaluation")
    parser.add_argument("--workers", type=int, help="processes, each running a share of the seeds (YAML default)")
    parser.add_argument("--finetune-epochs", type=int, help="fine-tune for this many epochs (a `-<N>ep` variant)")
    parser.add_argument("--no-long", action="store_true", help="skip the longer fine-tuning of the best config")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stdout)
    settings = yaml.safe_load(Path(args.config).read_text("utf-8"))
    torch.set_num_threads(int(settings.get("threads", 1)))
    seeds = args.seeds or settings["seeds"]
    data, results = Path(args.data), Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    started = time.time()

    kuake_dev = data / "kuake_qtr" / "KUAKE-QTR_dev.json"
    baseline = char_overlap_metrics(kuake_dev)
    log.info("character overlap on KUAKE-QTR dev: %s", baseline)
    workers = min(args.workers or int(settings.get("workers", 1)), len(seeds))
    if workers > 1:  # one single-threaded process per share of the seeds, then the table here
        if any(CONFIGS[n]["pretrain"] for n in args.configs):
            pretrain_frame(data, settings["corpus_caps"], settings.get("corpus_seed", 0))  # build the cache once
        common = ["--config", args.config, "--data", args.data, "--results", args.results, "--no-qbqtc", "--no-long",
                  "--workers", "1", "--configs", *args.configs]
        if args.finetune_epochs:
            common += ["--finetune-epochs", str(args.finetune_epochs)]
        run_workers(common, seeds, workers)
        seeds = []  # every run is done (or failed): go on to the table

    train = dev = corpus = None
    if seeds:
        train = labeled_examples(data / "kuake_qtr" / "KUAKE-QTR_train.json", settings.get("train_limit"))
        dev = labeled_examples(kuake_dev)

    for seed in seeds:  # every config of a seed before the next seed: a cut-off keeps whole rows
        for name in args.configs:
            spec = CONFIGS[name]
            if (results / f"{run_key(name, args.finetune_epochs)}-seed{seed}.json").exists():
                log.info("(%s) seed %d: done already", name, seed)
                continue
            init = None
            if spec["pretrain"]:
                if corpus is None:
                    corpus = pretrain_frame(data, settings["corpus_caps"], settings.get("corpus_seed", 0))
                pretrain_seed = seed if settings.get("pretrain_per_seed", True) else seeds[0]
                init = pretrained_model_dir(spec["pretrain"], pretrain_seed, settings, corpus, results)
            record = finetune_run(name, spec, seed, settings, train, dev, init, results, args.finetune_epochs)
            log.info("(%s) seed %d: dev %s [%.0fs so far]", name, seed, record["dev"], time.time() - started)
            write_table(results, baseline, None, settings)

    write_table(results, baseline, None, settings)
    summary = json.loads((results.parent / "ablation_summary.json").read_text("utf-8"))
    long_epochs = settings.get("long_finetune_epochs")
    main_configs = {k: v for k, v in summary["configs"].items() if k in CONFIGS}
    if long_epochs and not args.no_long and not args.finetune_epochs and main_configs:
        # The table's configs are fine-tuned briefly (CPU budget); the best one also gets a longer run.
        best = max(main_configs, key=lambda k: main_configs[k]["mean_auc"])
        log.info("longer fine-tuning (%d epochs) of the best configuration (%s)", long_epochs, best)
        common = ["--config", args.config, "--data", args.data, "--results", args.results, "--no-qbqtc", "--no-long",
                  "--workers", "1", "--configs", best, "--finetune-epochs", str(long_epochs)]
        run_workers(common, settings["seeds"] if not args.seeds else args.seeds, max(1, workers))
        write_table(results, baseline, None, settings)
        summary = json.loads((results.parent / "ablation_summary.json").read_text("utf-8"))
    qbqtc = None
    if not args.no_qbqtc and summary["configs"]:
        best = max(summary["configs"], key=lambda k: summary["configs"][k]["mean_auc"])
        qbqtc_file = data / "qbqtc" / "dev.json"
        qbqtc_dev = labeled_examples(qbqtc_file)
        qbqtc = {"config": best, "n": len(qbqtc_dev), "baseline": char_overlap_metrics(qbqtc_file),
                 "auc": [], "spearman": [], "accuracy": [], "seeds": []}
        for seed in summary["configs"][best]["seeds"]:
            record = json.loads((results / f"{best}-seed{seed}.json").read_text("utf-8"))
            metrics = evaluate(load_model(record["model_dir"]), qbqtc_dev, positive_label=2).as_dict()
            for key in ("auc", "spearman", "accuracy"):
                qbqtc[key].append(metrics[key])
            qbqtc["seeds"].append(seed)
            log.info("(%s) seed %d on QBQTC dev: %s", best, seed, metrics)
        _write_json(results / "qbqtc-best.json", qbqtc)
    table = write_table(results, baseline, qbqtc, settings)
    print(table)
    log.info("ablation finished in %.0f s", time.time() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
