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


def copy_of_shipped_model(tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL_DIR, folder)
    return folder


def test_a_link_in_the_model_folder_is_refused_in_one_line_before_anything_is_copied(settings, tmp_path):
    from hcmrm.errors import ModelError

    folder = copy_of_shipped_model(tmp_path)
    (folder / "notes.txt").symlink_to("/etc/passwd")
    with pytest.raises(ModelError, match="notes.txt is a symbolic link, not a regular file") as error:
        register(settings, "--path", str(folder))
    assert error.value.exit_code == 4
    assert registry.current_champion(settings) is None


def test_a_stopped_register_removes_its_partial_artifact_and_marks_its_run_killed(settings, tmp_path, monkeypatch):
    import signal

    import mlflow

    from hcmrm.errors import Interrupted
    from hcmrm.tracking.runs import CommandScope
    from hcmrm.tracking.store import configure

    folder = copy_of_shipped_model(tmp_path)
    real_log_artifact, logged = mlflow.log_artifact, []

    def stopped_after_the_first_file(path, artifact_path=None):  # SIGTERM part way through the upload
        if logged:
            raise Interrupted(signal.SIGTERM, 0)
        logged.append(path)
        return real_log_artifact(path, artifact_path)

    monkeypatch.setattr(mlflow, "log_artifact", stopped_after_the_first_file)
    with pytest.raises(Interrupted), CommandScope():
        register(settings, "--path", str(folder))
    client = configure(settings).MlflowClient()
    experiment = client.get_experiment_by_name(job.EXPERIMENT)
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "KILLED" and logged
    assert client.list_artifacts(run.info.run_id) == []  # the partial model folder is gone
    assert registry.current_champion(settings) is None


def test_a_read_only_tracking_store_is_said_in_one_line_with_its_own_exit_code(settings, tmp_path):
    import subprocess
    import sys

    from tests.jobs.test_clean_failures import environment

    assert register(settings) == 0  # the store exists
    read_only = f"sqlite:///file:{settings.tracking_uri.removeprefix('sqlite:///')}?mode=ro&uri=true"
    done = subprocess.run([sys.executable, "-m", "jobs.cli", "register-model", "--tracking-uri", read_only,
                           "--artifact-root", settings.artifact_root, "--lake", settings.lake], capture_output=True,
                          text=True, env=environment(), timeout=300)
    assert done.returncode == 6
    assert done.stderr.strip().splitlines() == [
        f"hcmrm register-model: the MLflow tracking store {read_only} is read-only; make the store writable (or wait "
        f"for the process holding it), or point --tracking-uri at another; rerun"]
