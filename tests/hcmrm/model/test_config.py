"""Model configs: presets, overrides, dict/JSON round trips, and hcmrm/conf/model/*.yaml in step with the presets."""

from pathlib import Path

import pytest

from hcmrm.model.config import HCMRMConfig, PRESETS, load_config, preset
from hcmrm.settings import CONF_DIR

CONF_MODEL = CONF_DIR / "model"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_round_trips_through_a_dict(name):
    config = preset(name)
    assert HCMRMConfig.from_dict(config.to_dict()) == config


def test_base_has_the_paper_sizes():
    config = preset("base")
    assert (config.text.hidden, config.text.text_layers, config.text.fusion_layers) == (768, 6, 6)
    assert config.text.vocab_size == 21128
    assert (config.vision.timm_model, config.vision.depth, config.vision.image_size) == ("vit_base_patch32_224", 6, 224)
    assert config.use_momentum and config.queue_size > 0
    assert not preset("tiny").use_momentum


def test_overrides_top_level_nested_and_dotted():
    config = preset("tiny", max_frames=5, text={"dropout": 0.2}, **{"vision.depth": 1}, head="bce")
    assert (config.max_frames, config.text.dropout, config.vision.depth, config.head) == (5, 0.2, 1, "bce")
    assert config.text.hidden == preset("tiny").text.hidden  # untouched fields keep the preset's value


@pytest.mark.parametrize("bad", [{"head": "softmax"}, {"no_such_field": 1}, {"max_text_len": 1000}])
def test_bad_configs_are_refused(bad):
    with pytest.raises(ValueError):
        preset("tiny", **bad)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_conf_model_yaml_matches_the_preset(name):
    assert load_config(CONF_MODEL / f"{name}.yaml") == preset(name)


def test_yaml_can_name_a_preset_with_overrides(tmp_path):
    path = tmp_path / "base8.yaml"
    path.write_text("preset: base\nmax_frames: 8\n")
    assert load_config(path) == preset("base", max_frames=8)
