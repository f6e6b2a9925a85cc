"""The MLflow run of a job that does work (score, pseudo-queries, pretrain, finetune), from start to close:

    with claimed_run(client, experiment_id, "score", "score 2024-09-10", dates=["2024-09-10"],
                     claim_hours=24, what="before reading anything") as run:
        ...work, logging to run.run_id...
        run.finish(metrics)     # optional: FINISHED now, with metrics (else FINISHED when the block ends)

It starts the run tagged with its job (and dates), adopts it (marked KILLED if the command is stopped;
runs a kill -9 left are closed: hcmrm.tracking.runs), claims its dates (ClaimLost, exit 5, while another
run of the job holds one of them) and closes it: FINISHED when the block ends, FAILED with the error's
message when it raises (KILLED when that was a stop: the command's CommandScope turns it so).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class ClaimedRun:
    client: object  # the MlflowClient the run is logged with
    run_id: str
    finished: bool = False  # finish() was called: the block's end leaves the run as it is

    def finish(self, metrics: dict[str, float] | None = None) -> None:
        """Log `metrics` and end the run FINISHED; a tracking-store failure here raises to the caller (once
        called, the block's end does not try again)."""
        self.finished = True
        for key, value in (metrics or {}).items():
            self.client.log_metric(self.run_id, key, value)
        self.client.set_terminated(self.run_id, "FINISHED")


@contextmanager
def claimed_run(client, experiment_id: str, job: str, run_name: str, dates: list[str] | None = None,
                claim_hours: float = 0.0, what: str = "", committed=None, tags: dict | None = None):
    """A ClaimedRun of `job` in `experiment_id`, open while the block runs. With `dates`, the run is tagged
    with them and claims them (hcmrm.tracking.runs.claim_dates: `claim_hours`, `what`, `committed`)."""
    from hcmrm.tracking.runs import DATE_TAG, JOB_TAG, adopt_run, claim_dates, close_run, date_tag

    all_tags = {JOB_TAG: job, **({DATE_TAG: date_tag(dates)} if dates is not None else {}), **(tags or {})}
    run = ClaimedRun(client, client.create_run(experiment_id, run_name=run_name, tags=all_tags).info.run_id)
    try:
        adopt_run(client, run.run_id)  # KILLED if the command is stopped; closes the runs a kill -9 left RUNNING
        if dates is not None:
            claim_dates(client, client.get_run(run.run_id), claim_hours, what, committed=committed)
        yield run
    except BaseException as err:
        close_run(client, run.run_id, "FAILED", str(err))  # a store failing here is logged: `err` is what is told
        raise
    if not run.finished:
        run.finish()
