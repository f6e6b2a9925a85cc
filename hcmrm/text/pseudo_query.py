"""Pseudo-queries for PQVM pre-training.

HCMRM pre-trains on triplets (pseudo-query, remaining video text, frames): a pseudo-query is
1..k keywords drawn from the video's own text (title, OCR, ASR), and the remaining text is that
text with those keywords taken out, so the model must match them through frames and context
rather than by copying. The same keyword ranking (`hcmrm.text.keywords`) gives the text the model
reads for a video at fine-tuning and scoring time (`hcmrm.text.video_text`); `pretrain_text`
builds both from one tokenization.

Sampling is seeded per video (`video_seed(seed, video_id)`), so a rerun gives the same pairs.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

from hcmrm.text.keywords import (  # noqa: F401  (re-exported: the pseudo-query API in one place)
    DEFAULT_CONFIG,
    Idf,
    Keyword,
    KeywordConfig,
    clean_text,
    extract_keywords,
    has_content,
    init_jieba,
    rank_keywords,
    rank_tokens,
    tokenize,
)
from hcmrm.tables import NO_KEYWORDS, NO_TEXT  # why a video yields no pre-training pair
from hcmrm.text.video_text import TextSettings, video_text_from_tokens


@dataclass
class PseudoQuery:
    pseudo_query: str  # the sampled keywords, in reading order, joined as a search query
    keywords: list[str]  # those keywords, in the same order
    context_text: str  # the video text with every occurrence of them removed


@dataclass
class PretrainText:
    pseudo_query: str  # see PseudoQuery
    keywords: list[str]  # see PseudoQuery
    context_text: str  # see PseudoQuery
    video_text: str  # hcmrm.text.video_text.build_video_text(title, ocr_text, asr_text): the model's text input


def video_text(title: str | None, ocr_text: str | None, asr_text: str | None, max_field_chars: int | None = None) -> str:
    """Title, OCR and ASR cleaned (NFKC, whitespace collapsed) and joined by spaces; empty parts skipped."""
    parts = (clean_text(t, max_field_chars) for t in (title, ocr_text, asr_text))
    return " ".join(p for p in parts if p)


def video_seed(seed: int, video_id: str) -> int:
    """A 64-bit seed from the run's seed and the video id: stable across processes and Python versions."""
    digest = hashlib.blake2b(f"{seed}:{video_id}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def join_keywords(words: list[str]) -> str:
    """Keywords as one query string: Chinese run together (as people type), a space between Latin words."""
    out = ""
    for word in words:
        if out and out[-1].isascii() and out[-1].isalnum() and word[0].isascii() and word[0].isalnum():
            out += " "
        out += word
    return out


def remove_keywords(text: str, words: list[str]) -> str:
    """`text` with every occurrence of `words` (case-insensitive, longest first) replaced by a space."""
    for word in sorted(words, key=len, reverse=True):
        text = re.sub(re.escape(word), " ", text, flags=re.IGNORECASE)
    return re.sub(r"\s+", " ", text).strip()


def sample_keywords(ranked: list[Keyword], rng: random.Random, config: KeywordConfig = DEFAULT_CONFIG) -> list[Keyword]:
    """n keywords, n uniform in [query_min_keywords, query_max_keywords] (capped by what there is).

    "top" takes the n best; "weighted" draws n without replacement with chance proportional to
    score, so lower-ranked keywords sometimes make the query. Returned in reading order.
    """
    if not ranked:
        return []
    high = min(config.query_max_keywords, len(ranked))
    n = rng.randint(min(config.query_min_keywords, high), high)
    if config.query_sampling == "top":
        chosen = ranked[:n]
    else:
        pool = list(ranked)
        chosen = []
        for _ in range(n):
            total = sum(k.score for k in pool)
            point = rng.random() * total
            for i, kw in enumerate(pool):
                point -= kw.score
                if point <= 0 or i == len(pool) - 1:
                    chosen.append(pool.pop(i))
                    break
    return sorted(chosen, key=lambda k: k.position)


def _pseudo_query(text: str, ranked: list[Keyword], seed: int, config: KeywordConfig) -> PseudoQuery | None:
    chosen = sample_keywords(ranked[: config.top_k], random.Random(seed), config)
    if not chosen:
        return None
    words = [k.word for k in chosen]
    return PseudoQuery(pseudo_query=join_keywords(words), keywords=words, context_text=remove_keywords(text, words))


def make_pseudo_query(
    text: str, idf: Idf | None = None, config: KeywordConfig = DEFAULT_CONFIG, seed: int = 0
) -> PseudoQuery | None:
    """A pseudo-query drawn from the top_k keywords of `text`; None when it has no usable keyword.

    For a video, `video_pseudo_query` weights its title words above OCR/ASR words.
    """
    text = clean_text(text, config.max_text_chars)
    return _pseudo_query(text, rank_tokens(tokenize(text, config.hmm), idf, config), seed, config)


def _field_tokens(title, ocr_text, asr_text, config: KeywordConfig):
    """Cleaned fields, the text they make, and each field's tokens (each field tokenized once)."""
    fields = [clean_text(t, config.max_text_chars) for t in (title, ocr_text, asr_text)]
    text = " ".join(f for f in fields if f)
    return fields, text, [tokenize(f, config.hmm) if f else [] for f in fields]


def _rank_video(tokens: list[list[tuple[str, str]]], idf: Idf | None, config: KeywordConfig) -> list[Keyword]:
    weights = [config.title_weight] * len(tokens[0]) + [1.0] * (len(tokens[1]) + len(tokens[2]))
    return rank_tokens(tokens[0] + tokens[1] + tokens[2], idf, config, weights)


def video_pseudo_query(
    video_id: str,
    title: str | None,
    ocr_text: str | None,
    asr_text: str | None,
    idf: Idf | None = None,
    config: KeywordConfig = DEFAULT_CONFIG,
    seed: int = 0,
) -> PseudoQuery | None:
    """A video's pseudo-query: keywords of title + OCR + ASR, title words weighted by title_weight.

    The sampling seed is video_seed(seed, video_id). With title_weight 1 this equals
    make_pseudo_query(video_text(title, ocr_text, asr_text), seed=video_seed(seed, video_id)).
    """
    _, text, tokens = _field_tokens(title, ocr_text, asr_text, config)
    return _pseudo_query(text, _rank_video(tokens, idf, config), video_seed(seed, video_id), config)


def pretrain_text(
    video_id: str,
    title: str | None,
    ocr_text: str | None,
    asr_text: str | None,
    idf: Idf | None = None,
    config: KeywordConfig = DEFAULT_CONFIG,
    seed: int = 0,
    max_chars: int = 128,
) -> PretrainText | str:
    """Everything `pretrain_pairs` holds for one video's text, or the reject reason (a str).

    Each field is tokenized once; the results equal `video_pseudo_query(...)` and
    `build_video_text(...)` called separately.
    """
    fields, text, tokens = _field_tokens(title, ocr_text, asr_text, config)
    if not has_content(text):
        return NO_TEXT
    query = _pseudo_query(text, _rank_video(tokens, idf, config), video_seed(seed, video_id), config)
    if query is None:
        return NO_KEYWORDS
    return PretrainText(
        pseudo_query=query.pseudo_query,
        keywords=query.keywords,
        context_text=query.context_text,
        video_text=video_text_from_tokens(fields[0], tokens[1] + tokens[2], idf, TextSettings(config, max_chars)),
    )
