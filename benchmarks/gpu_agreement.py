"""Does the accelerator label as the CPU does? The same model and labeled pairs scored by hcmrm.scoring.Scorer
in bf16 on the device and in float32 on the CPU: the largest score difference, label agreement, and each side's
AUC / Spearman. No Spark and no pyspark on the scoring side, so it runs on a bare GPU machine.

    # here: the labeled files as `hcmrm evaluate` reads them (video texts built as the lake's), to Parquet
    .venv/bin/python benchmarks/gpu_agreement.py --write-inputs .devdata \
        /work/shared/data/kuake_qtr/KUAKE-QTR_dev.json /work/shared/data/qbqtc/dev.json
    # on the GPU machine
    python3 benchmarks/gpu_agreement.py --model hcmrm/models/kuake-small-match .devdata/*.parquet
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from hcmrm.scoring import Scorer, ScoringConfig  # noqa: E402
from hcmrm.train.metrics import p_at_least, relevance_metrics  # noqa: E402


def write_inputs(folder: Path, files: list[str]) -> None:
    """Each labeled file's (query, text, label), texts built as `hcmrm evaluate` builds them."""
    from hcmrm.settings import Settings
    from hcmrm.train.labeled_data import read_labeled
    from jobs.pseudo_queries import labeled_texts

    folder.mkdir(parents=True, exist_ok=True)
    for file in files:
        pairs = labeled_texts(read_labeled(file).pairs, Settings(), lambda: None)
        out = folder / (Path(file).parent.name + ".parquet")
        pairs[["query", "text", "label"]].to_parquet(out, index=False)
        print(f"{out}: {len(pairs)} pairs")


def scored(model_dir: str, frame: pd.DataFrame, device: str, threads: int) -> tuple[np.ndarray, np.ndarray, float]:
    torch.set_num_threads(threads)
    scorer = Scorer.from_dir(model_dir, ScoringConfig(pairs_per_batch=512), device)
    start = time.perf_counter()
    probs, score = scorer.score_pairs(list(frame["query"]), list(frame["text"]))
    return probs, score, time.perf_counter() - start


def compare(model_dir: str, path: str, device: str, threads: int) -> dict:
    frame = pd.read_parquet(path)
    labels = frame["label"].to_numpy()
    sides = {"cpu_fp32": scored(model_dir, frame, "cpu", threads), f"{device}_bf16": scored(model_dir, frame, device, threads)}
    report = {"data": Path(path).name, "pairs": len(frame)}
    for name, (probs, score, seconds) in sides.items():
        m = relevance_metrics(labels, score, p_at_least(probs))
        report[name] = {"auc": round(m.auc, 4), "spearman": round(m.spearman, 4), "seconds": round(seconds, 2)}
    (cpu_probs, cpu_score, _), (dev_probs, dev_score, _) = sides.values()
    report["max_abs_score_diff"] = float(f"{np.abs(cpu_score - dev_score).max():.3g}")
    report["label_agreement"] = round(float((cpu_probs.argmax(1) == dev_probs.argmax(1)).mean()), 4)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="labeled files (--write-inputs) or the Parquet files it wrote")
    parser.add_argument("--write-inputs", type=Path, help="write (query, text, label) Parquet files to this folder")
    parser.add_argument("--model", default=str(REPO / "hcmrm" / "models" / "kuake-small-match"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--threads", type=int, default=8, help="torch CPU threads of the float32 side")
    args = parser.parse_args(argv)
    if args.write_inputs:
        write_inputs(args.write_inputs, args.files)
        return
    for path in args.files:
        print(json.dumps(compare(args.model, path, args.device, args.threads)), flush=True)


if __name__ == "__main__":
    main()
