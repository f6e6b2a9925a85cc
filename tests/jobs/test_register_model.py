"""`hcmrm register-model`: the shipped model becomes the first champion; later versions leave it alone."""

import pytest

from hcmrm.model.checkpoint import load_model
from hcmrm.settings import SHIPPED_MODEL_DIR
from hcmrm.tracking import registry
from hcmrm.tracking.model_uri import champion_uri, resolve
from jobs import register_model as job
from jobs.common import build_parser


def register(settings, *argv):
    common = ["--tracking-uri", settings.tracking_uri, "--artifact-root", settings.artifact_root,
              "--model-name", settings.model_name, "--lake", settings.lake]
    return job.run(build_parser(job).parse_args([*argv, *common]))


def test_the_shipped_model_becomes_champion_only_when_there_is_none(settings, capsys):
    assert register(settings) == 0
    assert "v1 from" in capsys.readouterr().out
    assert registry.current_champion(settings).version == 1

    assert register(settings) == 0  # a second version: the champion stays
    assert "champion stays v1" in capsys.readouterr().out
    assert registry.current_champion(settings).version == 1

    assert register(settings, "--champion", "always") == 0
    assert registry.current_champion(settings).version == 3


def test_the_shipped_model_loads_from_the_registry_and_is_match_aware(settings):
    register(settings)
    resolved = resolve(champion_uri(settings.model_name), settings)
    assert int(resolved.version.version) == 1
    model = load_model(resolved.folder)
    assert model.config.text.match_embeddings
    assert (SHIPPED_MODEL_DIR / "MODEL_CARD.md").exists()


def test_a_folder_that_is_not_a_model_is_refused_before_anything_is_registered(settings, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(Exception):
        register(settings, "--path", str(tmp_path))
    assert registry.current_champion(settings) is None
