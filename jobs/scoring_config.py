"""The score job's settings (conf/jobs/score.yaml): read by score and backfill, and by irrelevant-rate for the
dimensions."""

from __future__ import annotations

from dataclasses import dataclass, field

from hcmrm.scoring import ScoringConfig
from hcmrm.settings import CONF_DIR
from jobs.session import ArrowBatches

CONF_FILE = CONF_DIR / "jobs" / "score.yaml"


@dataclass(frozen=True)
class ScoreJobConfig:
    experiment: str = "hcmrm-scoring"  # MLflow experiment of the score and backfill runs
    dimensions: tuple[str, ...] = ("advertiser", "industry")  # carried from query_ad_pairs (first) or ads
    device: str = "auto"  # auto (the task's Spark GPU, else cuda:0, else CPU), cpu or cuda
    require_text: bool = True  # reject ads whose video has no text at all
    require_input: bool = True  # a day with no rows in query_ad_pairs is an error (exit 3), not an empty day
    claim_hours: float = 24.0  # a RUNNING score of the same date younger than this makes a new one stop (claim_dates)
    # What one Arrow batch into a scoring worker holds: ad rows, their pairs (rows of pairs_per_row), bytes.
    arrow_batch: ArrowBatches = field(default_factory=lambda: ArrowBatches(rows=128, pairs=128 * 4096))
    pairs_per_row: int = 4096  # pairs of one ad per row: a hot ad is cut into rows of at most this many
    # Incremental scoring: a pair whose (query, ad_fingerprint, model version) has a committed score in the
    # carry_over_days before the date is carried over, not scored again; 0 scores every pair (--full-rescore).
    carry_over_days: int = 7
    engine: ScoringConfig = field(default_factory=ScoringConfig)  # the engine's batching
