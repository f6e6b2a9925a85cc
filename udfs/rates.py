"""The audit's intervals as columns: hcmrm.rate_estimates applied to summed counts with mapInPandas."""

from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql.types import DoubleType, StructField, StructType

from hcmrm.rate_estimates import prediction_powered, wilson
from hcmrm.tables import AUDIT_COUNTS, AUDIT_ESTIMATES


def estimates(counts: pd.DataFrame) -> pd.DataFrame:
    """`counts` (pairs, irrelevant_pairs and the AUDIT_COUNTS columns) with the AUDIT_ESTIMATES columns added
    (NaN, written as null, where there are too few audited pairs)."""
    audited, y, f, d2 = (counts[c].fillna(0).to_numpy() for c in AUDIT_COUNTS)
    audit = wilson(y, audited)
    ppi = prediction_powered(counts["pairs"].to_numpy(), counts["irrelevant_pairs"].to_numpy(), audited, y, f, d2)
    values = (audit.estimate, audit.low, audit.high, ppi.estimate, ppi.low, ppi.high)
    return counts.assign(**dict(zip(AUDIT_ESTIMATES, values)))


def with_estimates(counts: DataFrame) -> DataFrame:
    """Add the audited rate and the prediction-powered rate, each with its 95% interval, to summed counts."""
    schema = StructType([*(f for f in counts.schema.fields if f.name not in AUDIT_ESTIMATES),
                         *(StructField(c, DoubleType()) for c in AUDIT_ESTIMATES)])
    counts = counts.drop(*AUDIT_ESTIMATES)
    return counts.mapInPandas(lambda batches: (estimates(b) for b in batches), schema)
