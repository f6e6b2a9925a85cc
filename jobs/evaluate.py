"""evaluate: a model on a labeled file -> metrics as one JSON object on stdout.

    hcmrm evaluate --model models:/hcmrm@champion --data dev.json [--positive-label 2] [--split dev]
    hcmrm evaluate --model runs/finetune/model --data /work/shared/data/qbqtc/dev.json

--model is `models:/<name>@<alias>`, `models:/<name>/<version>`, `runs:/<run_id>/model` or a local
model folder. --data is any labeled file in the formats of the public sets: a JSON array, JSON
lines or Parquet with `query`, `title` (or `text`) and a label column `label` or `relevant`, int or
string. Labels >= --positive-label are relevant (2 on both the 4-level 0..3 scale and QBQTC's
3-level 0..2 scale), for AUC, accuracy and calibration alike. Output keys: auc, spearman, accuracy,
ndcg, n, ece and brier (calibration of the model's P(label >= --positive-label); null where
undefined). Rejected rows are counted on stderr and left out of n; progress (pairs scored / total)
goes to stderr too (--no-progress turns it off).

The pairs are scored by the production engine (hcmrm.scoring.Scorer), and each row's video text is
built as the pseudo-queries job builds `video_texts` (--text-conf). No Spark, unless rows carry
OCR/ASR text and the text settings use the lake's corpus IDF (then `keyword_idf` is read).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path

from jobs.common import script_main, settings_from_args, spark_from_args
from jobs.pseudo_queries import CONF_FILE as TEXT_CONF  # the settings video texts are built with

COMMAND = "evaluate"
HELP = "metrics (AUC, Spearman, accuracy, NDCG, calibration) of a model on a labeled JSON/Parquet file, as JSON"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="models:/<name>@<alias>, models:/<name>/<version>, runs:/<run_id>/model or a folder")
    parser.add_argument("--data", required=True, help="labeled pairs: JSON array, JSON lines or Parquet")
    parser.add_argument("--positive-label", type=int, default=2,
                        help="labels >= this are relevant: AUC; accuracy and ECE of P(label >= this) (default 2)")
    parser.add_argument("--split", help="only rows of this split (when the data has a split column)")
    parser.add_argument("--batch-size", type=int, help="pairs per forward pass (default: the scoring engine's)")
    parser.add_argument("--text-conf", type=Path, default=TEXT_CONF,
                        help=f"how video texts are built: the pseudo-queries job's settings (default {TEXT_CONF})")
    parser.add_argument("--limit", type=int, help="evaluate the first N pairs only")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress on stderr")


def run(args: argparse.Namespace) -> int:
    from hcmrm.train.finetune import evaluate

    model, examples = model_and_examples(args)
    with scoring_progress(len(examples), not args.no_progress) as progress:
        metrics = evaluate(model, examples, args.positive_label, args.batch_size, progress)
    print(json.dumps(metrics.as_dict()))
    return 0


def model_and_examples(args: argparse.Namespace):
    """The model --model names (loaded) and the labeled examples of --data, texts built as the lake's.

    The data is read first: a bad file fails before a model is downloaded."""
    import torch

    from hcmrm.model.checkpoint import load_model
    from hcmrm.tracking.model_uri import resolve
    from hcmrm.train.labeled_data import read_labeled, to_examples
    from jobs.pseudo_queries import labeled_texts

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = settings_from_args(args)
    data = read_labeled(args.data, split=args.split)
    if len(data.rejects):
        print(f"{len(data.rejects)} rows rejected: {data.rejects['reason'].value_counts().to_dict()}", file=sys.stderr)
    pairs = data.pairs.head(args.limit) if args.limit else data.pairs
    if len(pairs) == 0:
        raise SystemExit(f"no usable labeled pairs in {args.data}")
    model = resolve(args.model, settings)
    if model.version is not None:
        log.info("model %s = %s version %s (run %s)", args.model, model.version.name, model.version.version,
                 model.version.run_id)
    pairs = labeled_texts(pairs, settings, lambda: spark_from_args(args, settings, COMMAND), args.text_conf)
    return load_model(model.folder), to_examples(pairs)


@contextlib.contextmanager
def scoring_progress(total: int, enabled: bool = True):
    """A `progress(pairs_done)` callback drawing a bar on stderr, redrawn at most every 2 s; None when off."""
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc="pairs scored", unit="pair", file=sys.stderr, mininterval=2.0,
              dynamic_ncols=True) as bar:
        yield lambda done: bar.update(done - bar.n)


if __name__ == "__main__":
    script_main(sys.modules[__name__])
