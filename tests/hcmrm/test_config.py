"""The one config mechanism: nested dataclasses from YAML, flags merged over by one rule, typos refused."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
import yaml

from hcmrm.config import ConfigError, from_dict, load, merge, override, to_dict


@dataclass(frozen=True)
class Engine:
    batch_size: int = 8
    bf16: bool = True


@dataclass(frozen=True)
class Job:
    name: str = "job"
    dims: tuple[str, ...] = ("a", "b")
    out: str | None = "reports"
    engine: Engine = field(default_factory=Engine)
    extra: dict = field(default_factory=dict)  # free-form: its keys are not checked

    def __post_init__(self):
        if not self.name:
            raise ValueError("name must not be empty")


def write(tmp_path, text: str):
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def test_nested_dicts_become_dataclasses_lists_tuples_and_missing_keys_keep_defaults():
    job = from_dict(Job, {"dims": ["x"], "out": None, "engine": {"batch_size": 32}, "extra": {"any": 1}})
    assert job == Job(dims=("x",), out=None, engine=Engine(batch_size=32, bf16=True), extra={"any": 1})


def test_to_dict_is_the_inverse_and_writes_plain_yaml():
    job = Job(dims=("x", "y"), engine=Engine(bf16=False))
    plain = to_dict(job)
    assert plain == {"name": "job", "dims": ["x", "y"], "out": "reports", "engine": {"batch_size": 8, "bf16": False},
                     "extra": {}}
    assert from_dict(Job, yaml.safe_load(yaml.safe_dump(plain))) == job


def test_an_unknown_key_is_named_with_its_full_path_the_file_and_the_known_keys(tmp_path):
    path = write(tmp_path, "name: nightly\nengine:\n  batch_szie: 64\n")
    with pytest.raises(ConfigError) as caught:
        load(Job, path)
    assert str(caught.value) == (
        f"unknown key 'engine.batch_szie' in {path}; known: ['engine.batch_size', 'engine.bf16']"
    )


def test_an_unknown_flag_is_blamed_on_the_flags_not_the_file(tmp_path):
    path = write(tmp_path, "name: nightly\n")
    with pytest.raises(ConfigError, match=r"^unknown key 'engine.bf61' in flags; known: "):
        load(Job, path, {"engine.bf61": False})


def test_flags_merge_over_the_file_key_by_key_with_dotted_keys_and_none_ignored(tmp_path):
    path = write(tmp_path, "name: nightly\nengine:\n  batch_size: 64\n  bf16: false\n")
    job = load(Job, path, {"engine.batch_size": 128, "name": None, "out": "plots"})
    assert job == Job(name="nightly", out="plots", engine=Engine(batch_size=128, bf16=False))
    assert load(Job, path, {"engine": {"bf16": True}}).engine == Engine(batch_size=64, bf16=True)


def test_merge_is_one_rule_for_nested_and_dotted_keys():
    base = {"loop": {"epochs": 3, "optim": {"lr": 0.1, "warmup": 10}}, "preset": "small"}
    merged = merge(base, {"loop.optim.lr": 0.5, "loop": {"epochs": 1}, "preset": None})
    assert merged == {"loop": {"epochs": 1, "optim": {"lr": 0.5, "warmup": 10}}, "preset": "small"}
    assert base["loop"]["optim"]["lr"] == 0.1  # the base is not modified


def test_override_an_existing_config():
    assert override(Job(name="a"), {"engine.bf16": False}) == Job(name="a", engine=Engine(bf16=False))


@pytest.mark.parametrize("values, message", [
    ({"engine": 5}, "'engine' in the given values must be a mapping of Engine keys, got 5"),
    ({"dims": "ab"}, "'dims' in the given values must be a list, got 'ab'"),
    ({"extra": [1]}, "'extra' in the given values must be a mapping, got [1]"),
    ({"name": ""}, "name must not be empty (in the given values)"),  # the dataclass's own check
])
def test_values_of_the_wrong_shape_are_refused_with_where_they_are(values, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        from_dict(Job, values)


def test_a_file_that_is_missing_or_not_a_mapping_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no config file at"):
        load(Job, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="must hold a mapping of keys, not a list"):
        load(Job, write(tmp_path, "- name\n"))
    assert load(Job, write(tmp_path, "# only comments\n")) == Job()
