"""The relevance scale: four grades, Bad < Less < Good < Excellent, written as the labels 0..3.

The labeled data, the model's heads and probabilities, the metrics, the scores table, the
irrelevant rate and the report all take the scale from here. Plain Python: the model package
imports it too.
"""

from __future__ import annotations

GRADE_NAMES = ("bad", "less", "good", "excellent")  # the name of label 0..3; the order of the model's probabilities
LABEL_VALUES = tuple(range(len(GRADE_NAMES)))  # (0, 1, 2, 3)
MAX_LABEL = LABEL_VALUES[-1]  # Excellent

POSITIVE_LABEL = 2  # labels >= this are relevant (Good, Excellent): AUC's positive class, the BCE head's target
IRRELEVANT_MAX_LABEL = POSITIVE_LABEL - 1  # a pair is irrelevant when its label is <= this (Bad, Less)
IRRELEVANT_GRADES = GRADE_NAMES[: IRRELEVANT_MAX_LABEL + 1]
IRRELEVANT_WORDS = " or ".join(name.capitalize() for name in IRRELEVANT_GRADES)  # "Bad or Less", for people

# score = sum over k of k * P(label k) = p1 + 2 p2 + 3 p3: the expected grade, in 0..MAX_LABEL.
SCORE_WEIGHTS = tuple(float(k) for k in LABEL_VALUES)

# How a rater may write a grade: its number or its name, any case (audit-import reads labels through this).
GRADE_SPELLINGS = {**{str(k): k for k in LABEL_VALUES}, **{name: k for k, name in enumerate(GRADE_NAMES)}}

LABEL_RANGE = f"{LABEL_VALUES[0]}..{MAX_LABEL}"  # how errors spell the valid labels


def is_label(value: int) -> bool:
    """True when `value` is a grade of the scale."""
    return LABEL_VALUES[0] <= value <= MAX_LABEL


def check_labels(labels) -> None:
    """Raise a one-line ValueError naming the first few labels that are not grades."""
    bad = [label for label in labels if not is_label(label)]
    if bad:
        raise ValueError(f"labels must be grades {LABEL_RANGE}, got {bad[:5]}")

