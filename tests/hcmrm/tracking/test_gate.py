"""The registry gate: a worse model never takes `champion`; a better one does; both are logged."""

import json
from pathlib import Path

from hcmrm.tracking import gate

from hcmrm.tracking import registry

from hcmrm.tracking import store as tracking


def test_decide_is_a_pure_comparison():
    first = gate.decide("auc", 0.70, None, candidate_version="1", champion_version=None)
    assert first.promote and "no champion" in first.reason
    worse = gate.decide("auc", 0.69, 0.70, candidate_version="2", champion_version="1")
    assert not worse.promote and "does not beat" in worse.reason
    tie = gate.decide("auc", 0.70, 0.70, candidate_version="2", champion_version="1")
    assert not tie.promote  # a tie keeps the incumbent
    small = gate.decide("auc", 0.705, 0.70, candidate_version="2", champion_version="1", min_delta=0.01)
    assert not small.promote
    assert gate.decide("auc", 0.72, 0.70, candidate_version="2", champion_version="1").promote
    assert not gate.decide("auc", float("nan"), None, candidate_version="1").promote


def _register(settings, tmp_path, name, auc, fingerprint="dev-v1"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    mlflow = tracking.configure(settings)
    tracking.use_experiment(settings, "gate-test")
    with mlflow.start_run() as run:
        source = registry.log_model_dir(folder)
    version = registry.register_version(settings, run.info.run_id, source)
    gate.record_version_metrics(settings, version.version, {"auc": auc, "n": 10}, fingerprint)
    return version


def test_gate_refuses_a_worse_model_and_logs_why(settings, tmp_path):
    v1 = _register(settings, tmp_path, "a", 0.70)
    assert gate.apply_gate(settings, v1.version, {"auc": 0.70}, "auc", "dev-v1").promote
    assert str(registry.current_champion(settings).version) == "1"

    v2 = _register(settings, tmp_path, "b", 0.65)
    refused = gate.apply_gate(settings, v2.version, {"auc": 0.65}, "auc", "dev-v1")
    assert not refused.promote and refused.champion_value == 0.70
    assert str(registry.current_champion(settings).version) == "1"  # the alias did not move

    client = tracking.configure(settings).MlflowClient()
    assert client.get_model_version(settings.model_name, "2").tags["gate"] == "refused"
    assert client.get_run(v2.run_id).data.tags["gate"] == "refused"
    logged = Path(client.download_artifacts(v2.run_id, "gate_decision.json", str(tmp_path)))
    assert json.loads(logged.read_text())["champion_version"] == "1"

    v3 = _register(settings, tmp_path, "c", 0.75)
    assert gate.apply_gate(settings, v3.version, {"auc": 0.75}, "auc", "dev-v1").promote
    assert str(registry.current_champion(settings).version) == "3"


def test_champion_measured_on_other_data_is_re_evaluated(settings, tmp_path):
    v1 = _register(settings, tmp_path, "a", 0.90, fingerprint="old-dev")
    registry.set_alias(settings, v1.version)
    v2 = _register(settings, tmp_path, "b", 0.80, fingerprint="new-dev")
    asked = []

    def evaluate_champion(uri):
        asked.append(uri)
        return {"auc": 0.60}  # the old champion on the new data

    decision = gate.apply_gate(settings, v2.version, {"auc": 0.80}, "auc", "new-dev", evaluate_champion)
    assert asked == [f"models:/{settings.model_name}/1"]
    assert decision.promote and decision.champion_value == 0.60
