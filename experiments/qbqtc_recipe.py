"""Recipes toward the QBQTC target: more data (QBQTC v0 listwise train, through its label map), longer
token budgets, more epochs, width. Trains here; the figures come from `hcmrm evaluate` (--evaluate).

    .venv/bin/python experiments/qbqtc_recipe.py --rows kuake-long mix-long --seeds 0      # train (resumable)
    .venv/bin/python experiments/qbqtc_recipe.py --evaluate                               # score what is trained
    .venv/bin/python experiments/qbqtc_recipe.py --summary                                # the table

Every row starts from the shipped recipe (conf/train/kuake_small_match.yaml) and changes what its
entry in ROWS says. A run's model is .cache/qbqtc_recipe/<run>/model (its checkpoints beside it, so a
cut-off run resumes); `--evaluate` writes experiments/results/qbqtc_recipe/<run>.json with `hcmrm evaluate`'s
JSON per dev set and skips runs already scored. QBQTC v1 dev is never trained on.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from hcmrm.config import load  # noqa: E402
from hcmrm.settings import CONF_DIR  # noqa: E402
from hcmrm.train.finetune import FinetuneConfig, finetune  # noqa: E402
from hcmrm.train.labeled_data import build_texts, read_sources, to_examples  # noqa: E402

DATA = REPO.parent / "shared" / "data"
KUAKE = f"kuake={DATA / 'kuake_qtr' / 'KUAKE-QTR_train.json'}"
QBQTC_V0 = f"qbqtc={DATA / 'qbqtc_v0_listwise' / 'train.json'}"
DEV_SETS = {"kuake_qtr_dev": DATA / "kuake_qtr" / "KUAKE-QTR_dev.json", "qbqtc_dev": DATA / "qbqtc" / "dev.json"}
RECIPE = CONF_DIR / "train" / "kuake_small_match.yaml"
RESULTS = REPO / "experiments" / "results" / "qbqtc_recipe"
CACHE = REPO / ".cache" / "qbqtc_recipe"

LONG = {"max_query_len": 24, "max_text_len": 64}  # covers 99% / 97% of QBQTC dev queries / titles (40: 88%)
ROWS = {  # row -> (training sources, overrides of the shipped recipe)
    "kuake": ([KUAKE], {}),
    "kuake-long": ([KUAKE], {"model": LONG}),
    "mix": ([KUAKE, QBQTC_V0], {}),
    "mix-long": ([KUAKE, QBQTC_V0], {"model": LONG}),
    "mix-long-4ep": ([KUAKE, QBQTC_V0], {"model": LONG, "loop": {"epochs": 4}}),
    "mix-long-wide": ([KUAKE, QBQTC_V0], {"model": {**LONG, "text": {"hidden": 128, "intermediate": 256}}}),
    "pt-mix-long": ([KUAKE, QBQTC_V0], {"model": LONG}),  # from the pre-trained model of PRETRAIN
}
# Text-only pre-training (ITC + ITM + MLM, no PQVM: no frames) on the query -> text pairs the corpora have,
# before fine-tuning the `pt-` rows: KUAKE-QTR and QBQTC v0 train pairs graded above Bad, TNEWS keywords ->
# headline, Bilibili tags -> title. THUCNews titles and Multi-CPR queries have no partner text.
PRETRAIN = {"steps": 1000, "lr": 5.0e-4, "warmup_steps": 100}


def pretrain_examples() -> list:
    from hcmrm.train.batching import PretrainExample
    from hcmrm.train.labeled_data import read_records

    pairs = []
    for path in (DATA / "kuake_qtr" / "KUAKE-QTR_train.json", DATA / "qbqtc_v0_listwise" / "train.json"):
        rows = read_records(path)
        graded = rows["label" if "label" in rows.columns else "relevant"].astype(int) >= 1
        pairs += list(zip(rows["query"][graded], rows["title"][graded]))
    for path in (DATA / "tnews_keywords" / "dev.json", DATA / "tnews_keywords" / "test.json"):
        rows = read_records(path)
        pairs += [(k.replace(",", " "), t) for k, t in zip(rows["keywords"], rows["sentence"]) if k]
    rows = read_records(DATA / "bilibili_top100_titles" / "videos_dedup.jsonl")
    pairs += [(" ".join(t.strip("[]").replace("'", "").split(", ")[:5]), title)
              for t, title in zip(rows["tags"], rows["title"]) if isinstance(t, str) and len(t) > 2]
    return [PretrainExample(q, t, None) for q, t in pairs if q.strip() and t.strip()]


def pretrained(seed: int, model: dict) -> Path:
    """The pre-trained model of PRETRAIN for this seed (trained once, resumable)."""
    from hcmrm.config import from_dict
    from hcmrm.train.pretrain import PretrainConfig, pretrain

    out = CACHE / f"pretrain-seed{seed}"
    if not (out / "model").exists():
        config = from_dict(PretrainConfig, {
            "preset": "small", "model": model, "weights": {"pqvm": 0.0},
            "loop": {"max_steps": PRETRAIN["steps"], "batch_size": 32, "seed": seed, "log_every": 100,
                     "optim": {"lr": PRETRAIN["lr"], "warmup_steps": PRETRAIN["warmup_steps"]}}})
        examples = pretrain_examples()
        print(f"pretrain-seed{seed}: {len(examples)} pairs, {PRETRAIN['steps']} steps", flush=True)
        pretrain(examples, config, out_dir=out, progress=True)
    return out / "model"


def run_name(row: str, seed: int) -> str:
    return f"{row}-seed{seed}"


def train(rows: list[str], seeds: list[int]) -> None:
    for seed in seeds:
        for row in rows:
            name = run_name(row, seed)
            if (CACHE / name / "model").exists():
                continue
            sources, overrides = ROWS[row]
            config = load(FinetuneConfig, RECIPE, {**overrides, "loop.seed": seed})
            pairs = read_sources(sources, config.label_maps)
            examples = to_examples(build_texts(pairs.pairs))
            started = time.time()
            init = pretrained(seed, config.model) if row.startswith("pt-") else None
            print(f"{name}: training on {len(examples)} pairs ({len(pairs.rejects)} rejected)", flush=True)
            finetune(examples, None, config, out_dir=CACHE / name, init=init, progress=True)
            (CACHE / name / "trained.json").write_text(json.dumps(
                {"run": name, "row": row, "seed": seed, "sources": sources, "overrides": overrides,
                 "train_pairs": len(examples), "seconds": round(time.time() - started, 1)}, indent=2) + "\n")


def evaluate_all() -> None:
    """`hcmrm evaluate` on both dev sets for every trained run not yet scored (the user's command)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    for trained in sorted(CACHE.glob("*/trained.json")):
        record = json.loads(trained.read_text())
        out = RESULTS / f"{record['run']}.json"
        if out.exists():
            continue
        model = trained.parent / "model"
        for dev, path in DEV_SETS.items():
            command = [str(REPO / ".venv" / "bin" / "hcmrm"), "evaluate", "--model", str(model), "--data", str(path),
                       "--no-progress"]
            result = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO)
            record[dev] = json.loads(result.stdout.strip().splitlines()[-1])
        out.write_text(json.dumps(record, indent=2) + "\n")
        print(json.dumps({k: record[k] for k in ("run", *DEV_SETS)}), flush=True)


def summary_table() -> str:
    """Mean +- std over the seeds of each row (experiments/results/qbqtc_recipe.md)."""
    lines = ["| row | sources | seeds | KUAKE-QTR dev AUC | Spearman | QBQTC dev AUC | Spearman | train min |",
             "|---|---|---|---|---|---|---|---|"]
    for row, (sources, _) in ROWS.items():
        runs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob(f"{row}-seed*.json"))]
        if not runs:
            continue
        cells = []
        for dev in DEV_SETS:
            for metric in ("auc", "spearman"):
                values = [r[dev][metric] for r in runs]  # one seed: no spread to show
                spread = f" +- {statistics.stdev(values):.3f}" if len(values) > 1 else ""
                cells.append(f"{statistics.mean(values):.3f}{spread}")
        names = " + ".join(s.split("=")[0] for s in sources)
        minutes = statistics.mean(r["seconds"] for r in runs) / 60
        lines.append(f"| {row} | {names} | {len(runs)} | " + " | ".join(cells) + f" | {minutes:.0f} |")
    table = "\n".join(lines)
    (RESULTS.parent / "qbqtc_recipe.md").write_text(table + "\n")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=[])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--evaluate", action="store_true", help="score the trained runs with `hcmrm evaluate`")
    parser.add_argument("--summary", action="store_true", help="print the table of the scored runs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    train(args.rows, args.seeds)
    if args.evaluate:
        evaluate_all()
    if args.summary:
        print(summary_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
