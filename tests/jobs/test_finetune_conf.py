"""`hcmrm finetune --train-conf`: the shipped model's recipe is a file it takes, equal to the experiment's settings."""

import importlib.util
from pathlib import Path

import pytest

from hcmrm.config import ConfigError, load
from hcmrm.settings import CONF_DIR
from hcmrm.train.finetune import FinetuneConfig

ROOT = Path(__file__).resolve().parents[2]
RECIPE = CONF_DIR / "train" / "kuake_small_match.yaml"


def match_ablation():
    spec = importlib.util.spec_from_file_location("match_ablation", ROOT / "experiments" / "match_ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_recipe_is_the_match_ablations_match_aware_row():
    recipe = load(FinetuneConfig, RECIPE)
    assert recipe == match_ablation().run_config("match", seed=0, epochs=2)
    assert recipe.model["text"]["match_embeddings"] and recipe.loop.epochs == 2


def test_the_ablation_file_is_an_experiment_not_a_train_conf():
    with pytest.raises(ConfigError, match="unknown keys .*'finetune'"):
        load(FinetuneConfig, CONF_DIR / "train" / "ablation.yaml")


def test_label_maps_come_from_the_training_yaml_and_are_checked(tmp_path):
    assert load(FinetuneConfig, RECIPE).label_maps["qbqtc"] == {0: 0, 1: 1, 2: 3}  # the default
    conf = tmp_path / "conf.yaml"
    conf.write_text("label_maps: {qbqtc: {0: 0, 1: 2, 2: 3}}\n")
    assert load(FinetuneConfig, conf).label_maps == {"qbqtc": {0: 0, 1: 2, 2: 3}}
    conf.write_text("label_maps: {qbqtc: {0: 0, 1: 5}}\n")
    with pytest.raises(ValueError, match="label map 'qbqtc': 1 -> 5"):
        load(FinetuneConfig, conf)
