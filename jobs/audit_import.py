"""audit-import: validate raters' labels and append them to `audit_labels`; refused rows go to a rejects file.

    hcmrm audit-import FILE [--rejects PATH]
    spark-submit jobs/audit_import.py FILE [same flags]

FILE is CSV (with a header) or Parquet, usually the audit-sample file with `label` and `rater` filled:
columns dt, query, ad_id, label, rater, optional labeled_at (default: the import's time); others are
ignored. `label` is a grade 0..3 or its name (bad, less, good, excellent; any case: hcmrm.labels).
A row is refused, with its reason (hcmrm/tables.py, AUDIT_REJECTS), when its key is empty, its grade
or labeled_at does not parse, it names no rater, the pair is not a scored pair of its day in
relevance_scores, the file labels the pair twice (one row is kept) or audit_labels already holds it.

Nothing is half-written: every row is counted as imported or rejected before anything is written; the
rejects file (default FILE.rejected.csv, the file's own text plus `reason`) is written to a temp name
and renamed, then the imported rows are appended in one Delta commit. Importing the same file again
adds nothing: every row is then `already_labeled`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import uuid
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from hcmrm.errors import InputDataError
from hcmrm.labels import GRADE_SPELLINGS
from hcmrm.tables import (
    ALREADY_LABELED, AUDIT_LABELS, CODE_SEPARATOR, AUDIT_REJECTS, BAD_GRADE, BAD_LABELED_AT, DUPLICATE_LABEL, MISSING_PAIR_KEY,
    NO_RATER, RELEVANCE_SCORES, UNKNOWN_PAIR,
)
from jobs.common import script_main, settings_from_args, spark_from_args
from jobs.commit import append_run
from jobs.tables import conform, is_delta_table, read_table

COMMAND = "audit-import"
HELP = "validate raters' labels (CSV or Parquet) and append them to audit_labels; rejected rows go to a file"

KEY = list(AUDIT_LABELS.key)
REQUIRED = (*KEY, "label", "rater")
TEXT_COLUMNS = ("dt", "query", "ad_id", "label", "rater", "labeled_at")  # the file's text, kept in rejects


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="labels as CSV (with a header) or Parquet")
    parser.add_argument("--rejects", type=Path, help="where refused rows go (default: FILE.rejected.csv)")


def read_labels(spark: SparkSession, path: Path) -> DataFrame:
    """The file's rows with every column as text (labeled_at null when the file has none)."""
    if not path.is_file():
        raise InputDataError(f"no labels file at {path}", hint="give the audit-sample file with its labels filled")
    if path.suffix == ".parquet":
        df = spark.read.parquet(str(path.resolve()))
    else:
        df = spark.read.option("header", True).option("multiLine", True).option("escape", '"').csv(str(path.resolve()))
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise InputDataError(f"labels file {path} lacks columns {missing}; it has {df.columns}",
                             hint="give dt, query, ad_id, label and rater (labeled_at optional)")
    if "labeled_at" not in df.columns:
        df = df.withColumn("labeled_at", F.lit(None))
    return df.select([F.col(c).cast("string").alias(c) for c in TEXT_COLUMNS])


def blank(column: str) -> Column:
    return F.coalesce(F.trim(F.col(column)), F.lit("")) == ""


def parsed(rows: DataFrame, imported_at: datetime.datetime) -> DataFrame:
    """Add the grade (_grade) and timestamp (_at) each row's text means; null where they do not parse."""
    spellings = F.create_map(*[F.lit(v) for kv in GRADE_SPELLINGS.items() for v in kv])
    at = F.when(blank("labeled_at"), F.lit(imported_at)).otherwise(F.try_to_timestamp(F.trim("labeled_at")))
    return rows.withColumn("_grade", F.try_element_at(spellings, F.lower(F.trim("label")))).withColumn("_at", at)


def first_reason(scored_keys: DataFrame, labeled_keys: DataFrame | None, rows: DataFrame) -> DataFrame:
    """Each row with `reason`: null when it is imported, else the first check it fails, in the order
    of the module docstring."""
    scored = scored_keys.select(*KEY).distinct().withColumn("_scored", F.lit(True))
    rows = rows.join(scored, KEY, "left")
    if labeled_keys is not None:
        rows = rows.join(labeled_keys.select(*KEY).distinct().withColumn("_labeled", F.lit(True)), KEY, "left")
    else:
        rows = rows.withColumn("_labeled", F.lit(None).cast("boolean"))
    order = Window.partitionBy(*KEY).orderBy(F.col("_at").desc_nulls_last(), "rater", "label")
    rows = rows.withColumn("_copy", F.row_number().over(order))
    checks = [
        (blank("dt") | blank("query") | blank("ad_id"), F.lit(str(MISSING_PAIR_KEY))),
        (F.col("_grade").isNull(), F.format_string(str(BAD_GRADE), F.coalesce(F.col("label"), F.lit("empty")))),
        (blank("rater"), F.lit(str(NO_RATER))),
        (F.col("_at").isNull(), F.format_string(str(BAD_LABELED_AT), F.col("labeled_at"))),
        (F.col("_scored").isNull(), F.lit(str(UNKNOWN_PAIR))),
        (F.col("_labeled").isNotNull(), F.lit(str(ALREADY_LABELED))),
    ]
    reason = F.lit(None).cast("string")
    for failed, text in reversed(checks):
        reason = F.when(failed, text).otherwise(reason)
    rows = rows.withColumn("reason", reason)
    # among a pair's valid rows, the first is imported and the others are its duplicates
    valid = Window.partitionBy(*KEY, F.col("reason").isNull()).orderBy("_copy")
    duplicate = F.col("reason").isNull() & (F.row_number().over(valid) > 1)
    return rows.withColumn("reason", F.when(duplicate, F.lit(str(DUPLICATE_LABEL))).otherwise(F.col("reason")))


def accepted_rows(checked: DataFrame, import_id: str) -> DataFrame:
    rows = checked.where(F.col("reason").isNull()).withColumn("label", F.col("_grade")) \
        .withColumn("rater", F.trim("rater")).withColumn("labeled_at", F.col("_at")) \
        .withColumn("import_id", F.lit(import_id))
    return conform(rows, AUDIT_LABELS)


def write_rejects(rejects, path: Path) -> None:
    partial = path.with_name(f".{path.name}.partial")
    rejects.to_csv(partial, index=False)
    os.replace(partial, path)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    spark = spark_from_args(args, settings, COMMAND)
    scores_path, labels_path = settings.table(RELEVANCE_SCORES.name), settings.table(AUDIT_LABELS.name)
    if not is_delta_table(spark, scores_path):
        raise InputDataError(f"no {RELEVANCE_SCORES.name} table at {scores_path}: nothing was scored to audit")
    rows = parsed(read_labels(spark, args.file), datetime.datetime.now(datetime.timezone.utc))
    labeled = read_table(spark, labels_path) if is_delta_table(spark, labels_path) else None
    checked = first_reason(read_table(spark, scores_path), labeled, rows).cache()
    total, accepted = checked.count(), checked.where(F.col("reason").isNull()).count()
    rejects = conform(checked.where(F.col("reason").isNotNull()), AUDIT_REJECTS).toPandas()
    if accepted + len(rejects) != total:  # every row lands once: imported or rejected
        raise RuntimeError(f"audit-import counted {total} rows but {accepted} imported + {len(rejects)} rejected")
    import_id = uuid.uuid4().hex
    rejects_path = args.rejects or args.file.with_name(args.file.name + ".rejected.csv")
    write_rejects(rejects, rejects_path)
    if accepted:
        append_run(accepted_rows(checked, import_id), labels_path)
    counts = rejects["reason"].str.split(CODE_SEPARATOR).str[0].value_counts().to_dict() if len(rejects) else {}
    print(f"audit-import {args.file}: {total} rows = {accepted} imported + {len(rejects)} rejected {counts}")
    print(f"  {AUDIT_LABELS.name}: {labels_path} (import {import_id}); rejects: {rejects_path.resolve()}")
    return 0


if __name__ == "__main__":
    script_main(sys.modules[__name__])
