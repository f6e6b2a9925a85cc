"""The label scale: grades 0..3, where relevant starts, the expected grade."""

import pytest
import torch

from hcmrm import labels
from hcmrm.model.losses import bce_probs, expected_grade


def test_the_grades_are_bad_less_good_excellent_as_0_to_3():
    assert dict(zip(labels.LABEL_VALUES, labels.GRADE_NAMES)) == {0: "bad", 1: "less", 2: "good", 3: "excellent"}
    assert labels.MAX_LABEL == 3 and labels.LABEL_RANGE == "0..3"


def test_relevant_and_irrelevant_split_the_scale_at_good():
    relevant = [k for k in labels.LABEL_VALUES if k >= labels.POSITIVE_LABEL]
    irrelevant = [k for k in labels.LABEL_VALUES if k <= labels.IRRELEVANT_MAX_LABEL]
    assert (irrelevant, relevant) == ([0, 1], [2, 3])  # every grade on exactly one side
    assert labels.IRRELEVANT_GRADES == ("bad", "less") and labels.IRRELEVANT_WORDS == "Bad or Less"


def test_the_score_is_the_expected_grade():
    probs = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1.0], [0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]])
    expected = [0.0, 3.0, 1.5, 0.2 + 2 * 0.3 + 3 * 0.4]
    assert expected_grade(probs).tolist() == pytest.approx(expected)
    assert [sum(w * p for w, p in zip(labels.SCORE_WEIGHTS, row)) for row in probs.tolist()] == pytest.approx(expected)


def test_the_bce_head_puts_its_probability_on_the_first_relevant_grade():
    probs = bce_probs(torch.tensor([[0.0]]))[0].tolist()
    assert probs[labels.POSITIVE_LABEL] == 0.5 and probs[0] == 0.5 and sum(probs) == 1.0


@pytest.mark.parametrize("value, ok", [(-1, False), (0, True), (3, True), (4, False), (2.0, True)])
def test_is_label(value, ok):
    assert labels.is_label(value) is ok


def test_check_labels_names_the_values_off_the_scale():
    labels.check_labels([0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"labels must be grades 0\.\.3, got \[4, -1\]"):
        labels.check_labels([0, 4, 3, -1])
