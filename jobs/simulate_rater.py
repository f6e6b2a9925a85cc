"""simulate-rater: the demo's stand-in for human raters: fill an audit sample's labels from a known truth.

    hcmrm simulate-rater SAMPLE [--truth hcmrm/sample/truth.parquet] [--out FILE]

SAMPLE is an audit-sample file (CSV or Parquet). Each row gets the true label of its (dt, query, ad_id)
from the truth file (the shipped sample's truth.parquet by default: hcmrm/sample/SOURCE.md) and rater
`simulated`; a pair the truth does not know keeps an empty label, which audit-import then rejects.
Writes SAMPLE's name with `.labeled.csv` (or --out), ready for `hcmrm audit-import`. Only the demo
needs this: on a real lake, people fill the labels. No Spark.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

from hcmrm.errors import InputDataError
from hcmrm.settings import SAMPLE_TRUTH
from hcmrm.tables import AUDIT_SAMPLE
from jobs.common import script_main

COMMAND = "simulate-rater"
HELP = "the demo's stand-in for raters: fill an audit sample's labels from the sample's known truth"

KEY = list(AUDIT_SAMPLE.key)
RATER = "simulated"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sample", type=Path, help="an audit-sample file (CSV or Parquet)")
    parser.add_argument("--truth", type=Path, default=SAMPLE_TRUTH, help=f"true labels (default {SAMPLE_TRUTH})")
    parser.add_argument("--out", type=Path, help="labeled file to write (default: SAMPLE's name + .labeled.csv)")


def read_frame(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputDataError(f"no file at {path}")
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str, keep_default_na=False)


def rate(sample: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """The sample with `label` = the true label (text; empty where unknown) and `rater` = simulated."""
    known = truth[KEY + ["label"]].rename(columns={"label": "_truth"})
    out = sample.drop(columns=["label", "rater"], errors="ignore").merge(known, on=KEY, how="left")
    out["label"] = out.pop("_truth").map(lambda v: "" if pd.isna(v) else str(int(v)))
    out["rater"] = RATER
    return out


def run(args: argparse.Namespace) -> int:
    labeled = rate(read_frame(args.sample), read_frame(args.truth))
    stem = args.sample.name.rsplit(".", 1)[0]
    out = args.out or args.sample.with_name(f"{stem}.labeled.csv")
    partial = out.with_name(f".{out.name}.partial")
    labeled.to_csv(partial, index=False)
    os.replace(partial, out)
    print(f"simulated rater: {(labeled['label'] != '').sum()} of {len(labeled)} pairs labeled -> {out.resolve()}")
    return 0


if __name__ == "__main__":
    script_main(sys.modules[__name__])
