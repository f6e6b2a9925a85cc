"""Every config refuses keys it does not know: a typo in YAML fails loudly instead of being ignored."""

import pytest

from hcmrm.config_keys import reject_unknown_keys
from hcmrm.scoring import ScoringConfig


def test_known_keys_pass_and_unknown_ones_are_named_with_the_known():
    reject_unknown_keys(ScoringConfig, ["pairs_per_batch", "bf16"], "scoring engine settings")
    with pytest.raises(ValueError, match=r"unknown scoring engine settings \['pairs_per_bach'\]; known: .*pairs_per_batch"):
        reject_unknown_keys(ScoringConfig, ["pairs_per_bach", "bf16"], "scoring engine settings")


def test_scoring_config_from_yaml_refuses_a_stale_key():
    assert ScoringConfig.from_dict({"pairs_per_batch": 64}).pairs_per_batch == 64
    with pytest.raises(ValueError, match="ads_per_chunk"):
        ScoringConfig.from_dict({"ads_per_chunk": 64})
