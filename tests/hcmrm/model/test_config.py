"""Model configs: the presets are conf/model/*.yaml; overrides; configs of older checkpoints still load."""

import json

import pytest

from hcmrm.config import from_dict, to_dict
from hcmrm.model.config import PRESETS, HCMRMConfig, load_config, preset

# config.json's "config" as a checkpoint of the tiny preset wrote it before the presets moved to YAML.
OLD_TINY_CONFIG_JSON = """{
  "distill_alpha": 0.4, "embed_dim": 16, "head": "hierarchical", "max_frames": 2, "max_query_len": 8,
  "max_text_len": 24, "mlm_probability": 0.15, "momentum": 0.995, "queue_size": 0, "temperature": 0.07,
  "use_momentum": false,
  "text": {"attention_dropout": 0.0, "dropout": 0.0, "fusion_layers": 2, "heads": 2, "hidden": 32,
           "intermediate": 64, "layer_norm_eps": 1e-12, "max_positions": 64, "text_layers": 2,
           "type_vocab_size": 2, "vocab_size": 21128},
  "vision": {"depth": 2, "heads": 2, "image_size": 32, "mean": [0.5, 0.5, 0.5], "mlp_ratio": 4.0,
             "patch_size": 16, "std": [0.5, 0.5, 0.5], "timm_model": null, "width": 32}
}"""


def test_the_presets_are_the_yaml_files():
    assert PRESETS == ("base", "e5small", "small", "tiny")


@pytest.mark.parametrize("name", PRESETS)
def test_a_preset_round_trips_through_a_plain_dict(name):
    config = preset(name)
    assert from_dict(HCMRMConfig, json.loads(json.dumps(to_dict(config)))) == config


def test_a_checkpoint_config_written_before_loads_as_the_same_preset_without_the_match_input():
    # Fields added since default to what the old code did: an old model keeps its exact architecture.
    old = from_dict(HCMRMConfig, json.loads(OLD_TINY_CONFIG_JSON))
    assert old == preset("tiny", text={"match_embeddings": False})
    assert preset("tiny").text.match_embeddings  # new tiny models are match-aware


def test_base_has_the_paper_sizes():
    config = preset("base")
    assert (config.text.hidden, config.text.text_layers, config.text.fusion_layers) == (768, 6, 6)
    assert config.text.vocab_size == 21128
    assert (config.vision.timm_model, config.vision.depth, config.vision.image_size) == ("vit_base_patch32_224", 6, 224)
    assert config.vision.mean == (0.5, 0.5, 0.5)  # a tuple, as the dataclass says, though YAML has a list
    assert config.use_momentum and config.queue_size > 0
    assert not preset("tiny").use_momentum


def test_overrides_top_level_nested_and_dotted():
    config = preset("tiny", max_frames=5, text={"dropout": 0.2}, **{"vision.depth": 1}, head="bce")
    assert (config.max_frames, config.text.dropout, config.vision.depth, config.head) == (5, 0.2, 1, "bce")
    assert config.text.hidden == preset("tiny").text.hidden  # untouched fields keep the preset's value


@pytest.mark.parametrize("bad, message", [
    ({"head": "softmax"}, "head must be one of"),
    ({"no_such_field": 1}, "unknown key 'no_such_field' in preset overrides"),
    ({"text.hiden": 64}, "unknown key 'text.hiden' in preset overrides"),
    ({"max_text_len": 1000}, "exceeds text.max_positions"),
])
def test_bad_configs_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        preset("tiny", **bad)


def test_unknown_preset_names_the_files_there_are():
    with pytest.raises(ValueError, match=r"unknown preset 'huge'; choose one of \['base', 'e5small', 'small', 'tiny'\]"):
        preset("huge")


def test_yaml_can_name_a_preset_with_overrides(tmp_path):
    path = tmp_path / "base8.yaml"
    path.write_text("preset: base\nmax_frames: 8\ntext: {dropout: 0.0}\n")
    assert load_config(path) == preset("base", max_frames=8, text={"dropout": 0.0})
    path.write_text("preset: base\nmax_frame: 8\n")
    with pytest.raises(ValueError, match=f"unknown key 'max_frame' in {path}"):
        load_config(path)


def test_e5small_has_e5s_sizes_on_its_pruned_vocabulary():
    t = preset("e5small").text
    assert (t.hidden, t.heads, t.intermediate, t.text_layers, t.fusion_layers) == (384, 12, 1536, 6, 6)
    assert (t.base, t.tokenizer, t.layer_norm_eps, t.first_word_id) == ("e5-small", "e5-small-zh", 1e-12, 6)
    from hcmrm.model.tokenizer import Tokenizer

    assert Tokenizer.from_config(preset("e5small")).vocab_size == t.vocab_size


def test_an_unknown_base_is_refused():
    with pytest.raises(ValueError, match="text.base must be one of"):
        preset("tiny", text={"base": "gpt"})
