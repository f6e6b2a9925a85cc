"""The tracking store: experiments are created on first use, also when two jobs start at once."""

from hcmrm.tracking import store as tracking


def test_use_experiment_creates_it_once_and_reuses_it(settings):
    first = tracking.use_experiment(settings, "store-test")
    assert tracking.use_experiment(settings, "store-test") == first


def test_an_experiment_created_by_another_job_in_between_is_used(settings, monkeypatch):
    """Two jobs starting together both find no experiment; the one that loses the create uses the winner's."""
    mlflow = tracking.configure(settings)
    winner = mlflow.create_experiment("raced")
    real, looks = mlflow.get_experiment_by_name, []

    def racing_lookup(name):  # this job's first look saw nothing: the other job created it right after
        looks.append(name)
        return None if len(looks) == 1 else real(name)

    monkeypatch.setattr(mlflow, "get_experiment_by_name", racing_lookup)
    assert tracking.use_experiment(settings, "raced") == winner
    assert looks == ["raced", "raced"]  # the create failed and the second look found the winner's
