"""Spark adapter (mapInPandas) around hcmrm.train.labeled_data.staged_rows: a lake table of labeled pairs
validated, label-mapped and given the model's text on the executors, partition by partition.

The IDF (when OCR/ASR keywords are ranked by the lake's) travels once per worker as a broadcast variable.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame

# staged_rows' columns, then `status` (accepted | rejected), which the staged files are partitioned by
STAGED_SCHEMA = ("query string, text string, label long, frames array<binary>, raw_label string, reason string, "
                 "status string")


def staged_frame(labeled: DataFrame, source: str, label_map: dict[int, int] | None, idf: Broadcast | None,
                 text_settings) -> DataFrame:
    """Every row of `labeled` as a staged row: accepted (the model's text, the mapped label, frames) or
    rejected with its reason."""

    def stage(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from hcmrm.train.labeled_data import staged_rows

        for batch in batches:
            rows = staged_rows(batch, source, label_map, idf.value if idf is not None else None, text_settings)
            yield rows.assign(status=["accepted" if r is None else "rejected" for r in rows["reason"]])

    return labeled.mapInPandas(stage, STAGED_SCHEMA)
