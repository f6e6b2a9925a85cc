"""One rule for every config read from YAML or flags: a key that is not a field is an error, not a silent default."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable


def reject_unknown_keys(cls: type, keys: Iterable[str], what: str) -> None:
    """Raise ValueError naming the `keys` that are not fields of the dataclass `cls`, and the known ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(keys) - known
    if unknown:
        raise ValueError(f"unknown {what} {sorted(unknown)}; known: {sorted(known)}")
