"""Spark adapters (mapInPandas) around hcmrm.text.pseudo_query: document terms and pre-training rows.

jieba loads once per Python worker (hcmrm.text.keywords.init_jieba keeps a process flag, and Spark
reuses its Python workers); the IDF travels once per worker as a broadcast variable.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pyarrow as pa
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame
from pyspark.sql.pandas.types import from_arrow_schema

from hcmrm.tables import BAD_FRAMES, FRAME_PROBLEMS, PRETRAIN_PAIRS, PRETRAIN_REJECTS
from hcmrm.text.keywords import DEFAULT_CONFIG, KeywordConfig, document_terms, has_content, init_jieba

TERMS_SCHEMA = "terms array<string>"

# One row out per video in: the pretrain_pairs columns (but the run id, which the job stamps), then a reject
# `reason` (then the pre-training fields are null); `video_text`, the model's text about the video, and
# `frame_problems`, every unusable frame, are there either way (they feed `video_texts`).
_PAIR_FIELDS = PRETRAIN_PAIRS.schema.remove(PRETRAIN_PAIRS.schema.get_field_index(PRETRAIN_PAIRS.run_column))
PAIR_SCHEMA = from_arrow_schema(_PAIR_FIELDS.append(PRETRAIN_REJECTS.schema.field("reason"))
                                .append(pa.field("frame_problems", FRAME_PROBLEMS)))


def document_terms_frame(videos: DataFrame, config: KeywordConfig = DEFAULT_CONFIG) -> DataFrame:
    """`terms`: the distinct candidate terms of each video with usable text (one row per such video)."""

    def terms(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from hcmrm.text.pseudo_query import video_text

        init_jieba()
        for batch in batches:
            out = []
            for title, ocr, asr in zip(batch["title"], batch["ocr_text"], batch["asr_text"]):
                text = video_text(title, ocr, asr, config.max_text_chars)
                if has_content(text):
                    out.append(document_terms(text, config))
            yield pd.DataFrame({"terms": out}, dtype=object)

    return videos.select("title", "ocr_text", "asr_text").mapInPandas(terms, TERMS_SCHEMA)


def pretrain_rows_frame(
    videos: DataFrame,
    idf: Broadcast | None,
    config: KeywordConfig = DEFAULT_CONFIG,
    seed: int = 0,
    max_sequence_chars: int = 128,
) -> DataFrame:
    """PAIR_SCHEMA rows from `videos` (video_id, dt, title, ocr_text, asr_text, frames).

    `idf` is a broadcast hcmrm.text.keywords.Idf, or None for jieba's built-in IDF. A row is rejected
    with reason NO_TEXT, NO_KEYWORDS or BAD_FRAMES (hcmrm.tables), its first problem in that order. A
    rejected video still gets its `video_text`: scoring needs one for every video (its OCR/ASR tokenized
    again here, for these few rows only). Every video's frames are checked at full scale within the
    default FrameLimits (hcmrm.model.frames.frame_problems), so scoring can reject from the record.
    """

    def rows(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from hcmrm.text.pseudo_query import PretrainText, pretrain_text
        from hcmrm.text.video_text import TextSettings, build_video_text

        text = TextSettings(config, max_sequence_chars)
        init_jieba()
        weights = idf.value if idf is not None else None
        for batch in batches:
            out = {name: [] for name in ("pseudo_query", "keywords", "context_text", "video_text", "reason",
                                         "frame_problems")}
            n_frames = []
            for video_id, title, ocr, asr, frames in zip(
                batch["video_id"], batch["title"], batch["ocr_text"], batch["asr_text"], batch["frames"]
            ):
                result = pretrain_text(video_id, title, ocr, asr, weights, config, seed, max_sequence_chars)
                ok = isinstance(result, PretrainText)
                out["video_text"].append(result.video_text if ok else build_video_text(title, ocr, asr, weights, text))
                problems = checked_frames(frames)
                out["frame_problems"].append([p._asdict() for p in problems])
                if ok and problems:
                    result = BAD_FRAMES.detail(str(problems[0]))
                ok = isinstance(result, PretrainText)
                out["pseudo_query"].append(result.pseudo_query if ok else None)
                out["keywords"].append(result.keywords if ok else None)
                out["context_text"].append(result.context_text if ok else None)
                out["reason"].append(None if ok else result)
                n_frames.append(len(frames) if frames is not None else 0)
            yield pd.DataFrame(
                {
                    "video_id": batch["video_id"],
                    "dt": batch["dt"],
                    "pseudo_query": pd.Series(out["pseudo_query"], dtype=object),
                    "keywords": pd.Series(out["keywords"], dtype=object),
                    "context_text": pd.Series(out["context_text"], dtype=object),
                    "video_text": pd.Series(out["video_text"], dtype=object),
                    "frames": batch["frames"],
                    "n_frames": pd.Series(n_frames, dtype="int32"),
                    "reason": pd.Series(out["reason"], dtype=object),
                    "frame_problems": pd.Series(out["frame_problems"], dtype=object),
                }
            )

    columns = ["video_id", "dt", "title", "ocr_text", "asr_text", "frames"]
    return videos.select(*columns).mapInPandas(rows, PAIR_SCHEMA)


def checked_frames(frames) -> list:
    """hcmrm.model.frames.frame_problems of a video's frames ([] without frames: torch is not imported)."""
    if frames is None or not len(frames):
        return []
    from hcmrm.model.frames import frame_problems

    return frame_problems(list(frames))
