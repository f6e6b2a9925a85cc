"""What changed in a day's input since a run read it, told by the Delta log of the input table.

A run records the version of `query_ad_pairs` it read (`scoring_runs.input_version`). Every commit
after it that added or removed data in the day's partition changed the day: new or deleted files, a
file rewritten with deletion vectors (a DELETE, UPDATE or MERGE that keeps the file), a RESTORE, an
overwrite; so does a change of the table's columns (compared at both versions). Commits that only move
rows (OPTIMIZE, dataChange false) or only change properties change nothing. The log is read, not the
data: the same path can hold other rows once deletion vectors are in play.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

ANY_DAY = None  # a change that may touch every day: data of an unpartitioned table


@dataclass
class Commit:
    """What one commit of the table did to data: the days it touched, in words."""

    version: int
    operation: str = "?"
    days: set = field(default_factory=set)  # partition values touched (ANY_DAY: every day)
    deletion_vectors: bool = False

    def says(self) -> str:
        how = " with deletion vectors" if self.deletion_vectors else ""
        return f"{self.operation} at version {self.version} changed the day's rows{how}"


def log_file(path: str, version: int) -> str:
    return posixpath.join(path.rstrip("/"), "_delta_log", f"{version:020d}.json")


def read_commits(spark: SparkSession, path: str, first: int, last: int) -> list[Commit] | None:
    """The commits `first`..`last` of the Delta table at `path`, from its JSON log; None when part of that
    log is gone (log retention), so nothing can be shown unchanged."""
    if first > last:
        return []
    try:
        lines = (spark.read.text([log_file(path, v) for v in range(first, last + 1)])
                 .select("value", F.col("_metadata.file_name").alias("name")).collect())
    except Exception:  # a log file that is no longer there: PATH_NOT_FOUND
        return None
    commits = {v: Commit(v) for v in range(first, last + 1)}
    for line in lines:
        action = json.loads(line["value"])
        commit = commits[int(line["name"].split(".")[0])]
        if "commitInfo" in action:
            commit.operation = action["commitInfo"].get("operation", "?")
        for kind in ("add", "remove"):
            if kind in action and action[kind].get("dataChange", True):
                values = list((action[kind].get("partitionValues") or {}).values())
                commit.days.update(values or [ANY_DAY])
                commit.deletion_vectors |= kind == "add" and bool(action[kind].get("deletionVector"))
    return [commits[v] for v in sorted(commits)]


def columns(spark: SparkSession, path: str, version: int) -> list[tuple[str, str]]:
    """(name, type) of each column of the table at `version` (a rename under column mapping changes them)."""
    fields = spark.read.format("delta").option("versionAsOf", version).load(path).schema.fields
    return [(f.name, f.dataType.simpleString()) for f in fields]


def changes_since(spark: SparkSession, path: str, read_at: dict[str, int], now: int) -> dict[str, str]:
    """{day: why its input differs now (`now`, a version) from the version its run read (`read_at`)}, for
    the days of `read_at` whose partition any later commit touched; the others are unchanged."""
    if not read_at:
        return {}
    commits = read_commits(spark, path, min(read_at.values()) + 1, now)
    if commits is None:
        return {day: f"the Delta log of the table since version {seen} is gone (log retention), so the input "
                     f"cannot be shown unchanged" for day, seen in read_at.items() if seen < now}
    schemas = {v: columns(spark, path, v) for v in {*read_at.values(), now}}
    why = {}
    for day, seen in read_at.items():
        if schemas[seen] != schemas[now]:
            why[day] = f"the table's columns differ from version {seen} (a schema change or a rename)"
            continue
        touched = [c for c in commits if c.version > seen and (day in c.days or ANY_DAY in c.days)]
        if touched:
            why[day] = "; ".join(c.says() for c in touched[:3]) + (f" (+{len(touched) - 3} more)" if len(touched) > 3
                                                                    else "")
    return why
