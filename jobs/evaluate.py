"""evaluate: a model on a labeled file -> metrics as one JSON object on stdout.

    hcmrm evaluate --model models:/hcmrm@champion --data dev.json [--positive-label 2] [--split dev]
    hcmrm evaluate --model runs/finetune/model --data /work/shared/data/qbqtc/dev.json

--model is `models:/<name>@<alias>`, `models:/<name>/<version>` or a local model folder. --data is
any labeled file in the formats of the public sets: a JSON array, JSON lines or Parquet with
`query`, `title` (or `text`) and a label column `label` or `relevant`, int or string. Labels >=
--positive-label are relevant (2 on both the 4-level 0..3 scale and QBQTC's 3-level 0..2 scale).
Output keys: auc, spearman, accuracy, ndcg, n (null where undefined). Rejected rows are counted on
stderr and left out of n. No Spark: this reads the file directly.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from jobs.common import script_main, settings_from_args

COMMAND = "evaluate"
HELP = "metrics (AUC, Spearman, accuracy, NDCG) of a model on a labeled JSON/Parquet file, as JSON"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="models:/<name>@<alias>, models:/<name>/<version> or a folder")
    parser.add_argument("--data", required=True, help="labeled pairs: JSON array, JSON lines or Parquet")
    parser.add_argument("--positive-label", type=int, default=2, help="labels >= this are relevant (default 2)")
    parser.add_argument("--split", help="only rows of this split (when the data has a split column)")
    parser.add_argument("--batch-size", type=int, default=256, help="pairs per inference batch")
    parser.add_argument("--limit", type=int, help="evaluate the first N pairs only")
    parser.add_argument("--threads", type=int, help="torch CPU threads")


def run(args: argparse.Namespace) -> int:
    import torch

    from hcmrm.train.finetune import evaluate
    from hcmrm.train.labeled_data import build_texts, read_labeled, to_examples
    from hcmrm.tracking.registry import load_registered

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = settings_from_args(args)
    data = read_labeled(args.data, split=args.split)
    if len(data.rejects):
        print(f"{len(data.rejects)} rows rejected: {data.rejects['reason'].value_counts().to_dict()}", file=sys.stderr)
    pairs = data.pairs.head(args.limit) if args.limit else data.pairs
    if len(pairs) == 0:
        raise SystemExit(f"no usable labeled pairs in {args.data}")
    model, version = load_registered(settings, args.model)
    if version is not None:
        log.info("model %s = %s version %s (run %s)", args.model, version.name, version.version, version.run_id)
    metrics = evaluate(model, to_examples(build_texts(pairs)), args.positive_label, args.batch_size)
    print(json.dumps(metrics.as_dict()))
    return 0


if __name__ == "__main__":
    script_main(sys.modules[__name__])
