"""The text the model reads about a video: its title whole, then OCR/ASR keywords, best first.

Built once per video, upstream: the pseudo-queries job writes it to the Delta table `video_texts`
with the settings that made it (`describe`, `fingerprint`), and the score job joins that table.
Labeled rows given as (query, title[, ocr_text, asr_text]) get theirs from this same function
with the same settings (conf/jobs/pseudo_queries.yaml), so training, evaluation and scoring
read one kind of text.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from importlib import metadata

from hcmrm.text.keywords import DEFAULT_CONFIG, Idf, KeywordConfig, clean_text, rank_tokens, tokenize


@dataclass(frozen=True)
class TextSettings:
    keywords: KeywordConfig = DEFAULT_CONFIG  # tokenizing, filtering and ranking of the OCR/ASR keywords
    max_chars: int = 128  # the text's length bound (the model reads at most max_text_len tokens of it)


def build_video_text(title: str | None, ocr_text: str | None, asr_text: str | None, idf: Idf | None = None,
                     settings: TextSettings = TextSettings()) -> str:
    """The video's text as the model reads it (`idf`: a hcmrm.text.keywords.Idf; None = jieba's).

    The title is kept whole (cut to max_chars only if longer); OCR/ASR keywords not already in it
    follow, best first, space-separated, while the text stays within max_chars.
    """
    config = settings.keywords
    fields = [clean_text(t, config.max_text_chars) for t in (title, ocr_text, asr_text)]
    tokens = [token for text in fields[1:] if text for token in tokenize(text, config.hmm)]
    return video_text_from_tokens(fields[0], tokens, idf, settings)


def video_text_from_tokens(title: str, extra_tokens: list[tuple[str, str]], idf: Idf | None,
                           settings: TextSettings) -> str:
    """build_video_text from the cleaned title and the jieba tokens of OCR then ASR (tokenized once by the caller)."""
    ranked = rank_tokens(extra_tokens, idf, settings.keywords) if extra_tokens else []
    out = title[: settings.max_chars]
    low = out.lower()
    for kw in ranked:
        if kw.word.lower() in low:
            continue
        candidate = f"{out} {kw.word}" if out else kw.word
        if len(candidate) <= settings.max_chars:
            out, low = candidate, candidate.lower()
    return out


# KeywordConfig fields that never change a video text: pseudo-query sampling, and how the IDF is
# obtained (the IDF itself is recorded by digest, so `--idf stored` after `--idf corpus` matches).
NOT_TEXT_SETTINGS = ("top_k", "query_min_keywords", "query_max_keywords", "query_sampling", "idf_source", "min_df")


def describe(settings: TextSettings, idf: Idf | None) -> dict:
    """What makes a video text, JSON-ready: the keyword settings, the bound and which IDF (its digest).

    `from_dict(KeywordConfig, describe(...)["keywords"])` gives settings that build the same texts.
    """
    keywords = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings.keywords).items()
                if k not in NOT_TEXT_SETTINGS}
    return {"keywords": keywords, "max_chars": settings.max_chars, "idf": _describe_idf(idf)}


def fingerprint(description: dict) -> str:
    """A short digest of `describe(...)`: equal fingerprints, texts made the same way."""
    text = json.dumps(description, sort_keys=True, ensure_ascii=False)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def _describe_idf(idf: Idf | None) -> dict:
    if idf is None:  # jieba's built-in table: its release pins it
        return {"source": "jieba", "jieba": metadata.version("jieba")}
    digest = hashlib.blake2b(digest_size=8)
    for term, weight in sorted(idf.weights.items()):
        digest.update(f"{term}\t{weight:.6g}\n".encode("utf-8"))
    return {"source": idf.source, "terms": len(idf), "default": round(idf.default, 6), "digest": digest.hexdigest()}
