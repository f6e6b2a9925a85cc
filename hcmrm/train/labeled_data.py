"""Labeled (query, video text, label) pairs: read any of the shipped formats, validate, quarantine.

Accepted files: a JSON array, JSON lines, or Parquet (a file or a folder of part files), with
columns `query`, a video text (`text`, the ready keyword sequence, or `title` with optional
`ocr_text`/`asr_text`), a label column (`label` or `relevant`, int or string), and optionally
`video_id`, `frames` (list of encoded images) and `split`. Rows that cannot be used are not
dropped silently: they come back in `rejects` with a `reason`.

Sources graded on another scale (QBQTC 0..2) are read through a label map, raw label -> the
model's 0..3, named in the training YAML (`label_maps`) and picked per file as `NAME=PATH`:

    maps = {"qbqtc": {0: 0, 1: 1, 2: 3}}
    pairs = read_sources(["../shared/data/kuake_qtr/KUAKE-QTR_train.json", "qbqtc=qbqtc_v0/train.json"], maps)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hcmrm.errors import InputDataError
from hcmrm.labels import LABEL_RANGE, is_label
from hcmrm.text.normalize import normalize_text

LABEL_COLUMNS = ("label", "relevant")  # KUAKE-QTR / QBQTC use `label`, QBQTC v0 uses `relevant`
OPTIONAL_COLUMNS = ("video_id", "frames", "split", "ocr_text", "asr_text")


@dataclass
class LabeledPairs:
    pairs: pd.DataFrame  # query, title, label (int), text (None until built), + optional columns
    rejects: pd.DataFrame  # the unusable rows as read, plus `reason`

    def __len__(self) -> int:
        return len(self.pairs)


class LabeledDataError(InputDataError, ValueError):
    """A labeled file that cannot be used as one (exit 3); a ValueError too, for callers that catch that."""

    hint = "check the file given as --data, --train or --dev"


def read_records(path: str | Path) -> pd.DataFrame:
    """A JSON array, JSON lines or Parquet file (or Parquet folder) as a DataFrame of its rows."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"labeled data not found: {path}")
    if path.is_dir():
        if (path / "_delta_log").exists():
            raise ValueError(f"{path} is a Delta table: read it through Spark (hcmrm finetune --table ...)")
        return pd.read_parquet(path)
    if path.suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    with path.open(encoding="utf-8") as f:
        head = f.read(4096).lstrip()
        f.seek(0)
        if head.startswith("["):
            try:
                rows = json.load(f)
            except json.JSONDecodeError as err:
                raise LabeledDataError(f"{path}: not valid JSON ({err})") from None
        elif head.startswith("{"):
            rows = []
            for number, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise LabeledDataError(f"{path}:{number}: not a JSON line ({err.msg})") from None
        elif not head:
            raise LabeledDataError(f"{path} is empty: no labeled rows")
        else:
            raise LabeledDataError(f"{path}: expected a JSON array, JSON lines or Parquet, got {head[:30]!r}")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise LabeledDataError(f"{path}: expected a list of JSON objects")
    return pd.DataFrame.from_records(rows)


def _parse_label(value) -> tuple[int | None, str | None]:
    """A grade of the model's scale: (label, None) or (None, reason)."""
    number, reason = _parse_label_number(value)
    if reason:
        return None, reason
    if not is_label(number):
        return None, f"label {number} outside {LABEL_RANGE}"
    return number, None


def _parse_label_number(value) -> tuple[int | None, str | None]:
    """An integer label on any scale (a source's raw grade): (value, None) or (None, reason)."""
    if value is None or (isinstance(value, float) and value != value):
        return None, "missing label"
    if isinstance(value, bool):
        return None, f"label {value!r} is not an integer"
    try:
        number = float(str(value).strip())
    except ValueError:
        return None, f"label {value!r} is not an integer"
    if number != int(number):
        return None, f"label {value!r} is not an integer"
    return int(number), None


def check_label_map(name: str, mapping) -> dict[int, int]:
    """A label map as {raw int: model label}, or a one-line ValueError naming what is wrong with it."""
    if not isinstance(mapping, dict) or not mapping:
        raise ValueError(f"label map {name!r}: expected a non-empty mapping raw label -> {LABEL_RANGE}, got {mapping!r}")
    out = {}
    for raw, label in mapping.items():
        raw_int, raw_reason = _parse_label_number(raw)
        model_int, model_reason = _parse_label(label)
        if raw_reason or model_reason:
            raise ValueError(f"label map {name!r}: {raw!r} -> {label!r}: {raw_reason or model_reason}")
        out[raw_int] = model_int
    return out


def _mapped_label(value, label_map: dict[int, int] | None) -> tuple[int | None, str | None]:
    """The model's label of a raw cell: parsed as a grade, or read through the source's label map."""
    if label_map is None:
        return _parse_label(value)
    raw, reason = _parse_label_number(value)
    if reason:
        return None, reason
    if raw not in label_map:
        return None, f"label {raw} not in the source's label map {sorted(label_map)}"
    return label_map[raw], None


def _text(value) -> str:
    """A text cell normalised (hcmrm.text.normalize) as scoring reads it; "" for null, NaN or invisible-only."""
    return "" if value is None or (isinstance(value, float) and value != value) else normalize_text(str(value))


def normalize(df: pd.DataFrame, source: str = "input", label_map: dict[int, int] | None = None) -> LabeledPairs:
    """Validate raw rows: pick the label column, parse labels (through `label_map` when the source is graded
    on another scale), quarantine rows without query/title/label."""
    label_column = next((c for c in LABEL_COLUMNS if c in df.columns), None)
    missing = [c for c in ("query",) if c not in df.columns]
    if "text" not in df.columns and "title" not in df.columns:
        missing.append("title (or text)")
    if label_column is None:
        missing.append(" or ".join(LABEL_COLUMNS))
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; found {list(df.columns)}")

    labels, reasons = [], []
    title_column = "title" if "title" in df.columns else "text"
    queries, titles = [_text(q) for q in df["query"]], [_text(t) for t in df[title_column]]
    for query, title, raw in zip(queries, titles, df[label_column]):
        label, reason = _mapped_label(raw, label_map)
        if not query:
            reason = "empty query"
        elif not title:
            reason = f"empty {title_column}"
        labels.append(label)
        reasons.append(reason)

    bad = pd.Series([r is not None for r in reasons], index=df.index)
    rejects = df[bad].copy()
    rejects["reason"] = [r for r in reasons if r is not None]
    keep = df[~bad]
    pairs = pd.DataFrame(
        {
            "query": pd.Series(queries, index=df.index, dtype=object)[~bad],
            "title": pd.Series(titles, index=df.index, dtype=object)[~bad],
            "label": pd.Series([l for l, r in zip(labels, reasons) if r is None], index=keep.index, dtype="int64"),
        }
    )
    pairs["text"] = keep["text"].map(_text) if "text" in keep.columns else None
    for column in OPTIONAL_COLUMNS:
        if column in keep.columns:
            pairs[column] = keep[column]
    return LabeledPairs(pairs.reset_index(drop=True), rejects.reset_index(drop=True))


def read_labeled(path: str | Path, split: str | None = None, label_map: dict[int, int] | None = None) -> LabeledPairs:
    """Read and validate a labeled file; `split` keeps only rows of that split (when a `split` column exists)."""
    df = read_records(path)
    if split is not None:
        if "split" not in df.columns:
            raise LabeledDataError(f"{path}: --split {split!r} given but the data has no `split` column")
        found = sorted(str(v) for v in df["split"].dropna().unique())
        df = df[df["split"] == split]
        if df.empty:
            raise LabeledDataError(f"{path}: no rows of split {split!r} (--split, or the job's split filter); "
                                   f"the file's splits are {found[:10]}")
    return normalize(df, source=str(path), label_map=label_map)


def parse_source(value: str, label_maps: dict) -> tuple[str, dict[int, int] | None]:
    """`NAME=PATH` -> (PATH, the label map NAME), a plain PATH -> (PATH, None: labels are already 0..3).

    Only a NAME of `label_maps` counts as a prefix, so a path holding `=` (a `dt=...` partition) stays a path.
    """
    name, sep, path = value.partition("=")
    if sep and name in label_maps:
        if not path:
            raise ValueError(f"{value!r}: no path after the label map's name {name!r}")
        return path, check_label_map(name, label_maps[name])
    if sep and name.isidentifier() and not Path(value).exists():
        raise ValueError(f"{value!r}: {name!r} is not a label map of the training YAML (label_maps: {sorted(label_maps)})")
    return value, None


def read_sources(values: list[str], label_maps: dict, split: str | None = None) -> LabeledPairs:
    """Several labeled files (each `PATH` or `NAME=PATH`), each through its label map, as one set."""
    if not values:
        raise ValueError("no labeled sources given")
    parts = [read_labeled(path, split, label_map) for path, label_map in (parse_source(v, label_maps) for v in values)]
    return concat(parts)


def concat(parts: list[LabeledPairs]) -> LabeledPairs:
    """One LabeledPairs of several, rows in order (the sources' columns united; a missing one is null)."""
    return LabeledPairs(pd.concat([p.pairs for p in parts], ignore_index=True),
                        pd.concat([p.rejects for p in parts], ignore_index=True))


def build_texts(pairs: pd.DataFrame, idf=None, settings=None) -> pd.DataFrame:
    """Fill `text` with the model's text about each row's video, built as the nightly tables build it.

    `hcmrm.text.video_text.build_video_text(title, ocr_text, asr_text, idf, settings)`: pass the
    settings of conf/jobs/pseudo_queries.yaml and its IDF (`idf` matters only when
    `needs_idf`). A `text` given in the data is kept as is.
    """
    from hcmrm.text.video_text import TextSettings, build_video_text

    settings = settings or TextSettings()
    pairs = pairs.copy()
    given = pairs["text"] if "text" in pairs.columns else [None] * len(pairs)
    pairs["text"] = [
        g if _given(g) else build_video_text(title, _field(o), _field(a), idf, settings)
        for g, title, o, a in zip(given, pairs["title"], _column(pairs, "ocr_text"), _column(pairs, "asr_text"))
    ]
    return pairs


def needs_idf(pairs: pd.DataFrame) -> bool:
    """Whether building the rows' texts ranks OCR/ASR keywords (a title alone needs no IDF)."""
    given = pairs["text"] if "text" in pairs.columns else [None] * len(pairs)
    return any(not _given(g) and (_field(o) or _field(a))
               for g, o, a in zip(given, _column(pairs, "ocr_text"), _column(pairs, "asr_text")))


def _given(text) -> bool:
    return isinstance(text, str) and bool(text)


def _field(value) -> str:
    return value if isinstance(value, str) else ""


def _column(pairs: pd.DataFrame, name: str):
    return pairs[name] if name in pairs.columns else [None] * len(pairs)


# A staged training row (jobs/labeled_input.py writes them, the fine-tuning stream reads them): accepted rows
# carry the model's text, the mapped label and the frames; rejected rows their `reason`, the raw label and no frames.
STAGED_COLUMNS = ("query", "text", "label", "frames", "raw_label", "reason")


def staged_rows(df: pd.DataFrame, source: str = "input", label_map: dict[int, int] | None = None, idf=None,
                settings=None) -> pd.DataFrame:
    """Raw labeled rows -> staged rows (STAGED_COLUMNS): `normalize`, then `build_texts` on the accepted ones."""
    checked = normalize(df, source=source, label_map=label_map)
    good = build_texts(checked.pairs, idf, settings) if len(checked.pairs) else checked.pairs
    bad = checked.rejects
    raw = next((c for c in LABEL_COLUMNS if c in bad.columns), None)
    shown = "title" if "title" in bad.columns else "text"
    accepted = pd.DataFrame({"query": good["query"], "text": good["text"],
                             "label": pd.array(good["label"], dtype="Int64"),
                             "frames": list(good["frames"]) if "frames" in good.columns else [None] * len(good)})
    rejected = pd.DataFrame({"query": _strings(bad["query"]), "text": _strings(bad[shown]),
                             "label": pd.array([None] * len(bad), dtype="Int64"), "frames": [None] * len(bad),
                             "raw_label": _strings(bad[raw]) if raw else None, "reason": bad["reason"]})
    return pd.concat([accepted.assign(raw_label=None, reason=None), rejected], ignore_index=True)[list(STAGED_COLUMNS)]


def _strings(values) -> list:
    return [None if v is None or (isinstance(v, float) and v != v) else str(v) for v in values]


def labeled_example(row: dict):
    """One streamed staged row -> a LabeledExample."""
    from hcmrm.train.batching import LabeledExample

    return LabeledExample(query=row["query"], text=row["text"], frames=_frames(row.get("frames")),
                          label=int(row["label"]))


def to_examples(pairs: pd.DataFrame) -> list:
    """LabeledExample per row (frames as encoded image bytes, or none: text-only)."""
    if pairs["text"].isna().any():
        raise ValueError("pairs have no `text` yet: call build_texts first")
    frames = pairs["frames"] if "frames" in pairs.columns else [None] * len(pairs)
    return [labeled_example({"query": q, "text": t, "frames": f, "label": y})
            for q, t, f, y in zip(pairs["query"], pairs["text"], frames, pairs["label"])]


def _frames(value) -> list[bytes]:
    if value is None or (isinstance(value, float) and value != value):
        return []
    return [bytes(b) for b in value if b is not None]

