"""Keywords of a video's text with jieba: TF-IDF ranking plus named entities (NER by POS tag).

A keyword is a jieba word that passes the stopword, length and part-of-speech filters. Its score
is its count in the text times its IDF, times `entity_boost` when jieba tags it as a person,
place, organisation or other proper noun. The IDF comes from the corpus itself (`Idf.from_counts`,
what the Spark job computes) or, when none is given, from the table that ships with jieba.

Pure Python: no Spark here, so the same functions run in a test, a loop and a Spark worker.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from hcmrm.text.normalize import normalize_text

STOPWORDS_FILE = Path(__file__).resolve().parents[1] / "assets" / "stopwords.txt"

# jieba.posseg tags of proper nouns: person (nr, with nrt transliterated and nrfg), place (ns),
# organisation (nt), other proper noun (nz).
ENTITY_TAGS = ("nr", "nrt", "nrfg", "ns", "nt", "nz")

_CJK_OR_LETTER = re.compile(r"[\u3400-\u9fffA-Za-z]")


@dataclass(frozen=True)
class KeywordConfig:
    top_k: int = 8  # keywords kept per text, best first
    min_chars: int = 2  # shortest keyword (one Chinese character is rarely a keyword)
    max_chars: int = 12  # longest keyword; longer "words" are jieba failures on noisy text
    tfidf_pos: tuple[str, ...] = ("n", "vn", "eng")  # posseg tag prefixes eligible by TF-IDF alone
    entity_pos: tuple[str, ...] = ENTITY_TAGS  # posseg tags counted as named entities
    fallback_pos: tuple[str, ...] = ("v", "a", "i", "l")  # tag prefixes used only when no word passes the above
    entity_boost: float = 2.0  # score multiplier for named entities
    title_weight: float = 2.0  # a title word counts this many times (OCR/ASR words once)
    hmm: bool = True  # jieba's HMM finds unknown words (names); about 10x slower when on
    drop_contained: bool = True  # drop a keyword contained in (or containing) a better one
    stopwords_file: str | None = None  # one word a line; None = hcmrm/assets/stopwords.txt
    extra_stopwords: tuple[str, ...] = ()  # added to the file's words
    max_text_chars: int = 2000  # each text field is cut to this before tokenising (long ASR)
    query_min_keywords: int = 2  # a pseudo-query has at least this many keywords (fewer if the text has fewer) ...
    query_max_keywords: int = 5  # ... and at most this many (k), drawn uniformly in between
    query_sampling: str = "weighted"  # "weighted": draw keywords by score; "top": the best n
    idf_source: str = "corpus"  # the job's IDF: "corpus" (count its input), "stored" (reuse) or "jieba"
    min_df: int = 1  # the corpus IDF keeps terms in at least this many documents

    def __post_init__(self):
        if not 1 <= self.min_chars <= self.max_chars:
            raise ValueError(f"need 1 <= min_chars <= max_chars, got {self.min_chars}, {self.max_chars}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if not 1 <= self.query_min_keywords <= self.query_max_keywords:
            raise ValueError(
                f"need 1 <= query_min_keywords <= query_max_keywords, "
                f"got {self.query_min_keywords}, {self.query_max_keywords}"
            )
        if self.query_sampling not in ("weighted", "top"):
            raise ValueError(f"query_sampling must be 'weighted' or 'top', got {self.query_sampling!r}")
        if self.idf_source not in ("corpus", "stored", "jieba"):
            raise ValueError(f"idf_source must be 'corpus', 'stored' or 'jieba', got {self.idf_source!r}")
        if self.min_df < 1:
            raise ValueError(f"min_df must be >= 1, got {self.min_df}")


DEFAULT_CONFIG = KeywordConfig()


# ---------------------------------------------------------------- jieba, once per process

_jieba_ready = False


def init_jieba() -> None:
    """Load jieba's dictionary once per process (about a second), with its logs quiet."""
    global _jieba_ready
    if _jieba_ready:
        return
    import jieba
    import jieba.posseg  # noqa: F401  (loads the POS model)

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    _jieba_ready = True


def tokenize(text: str, hmm: bool = True) -> list[tuple[str, str]]:
    """(word, posseg tag) pairs of `text`."""
    init_jieba()
    import jieba.posseg

    return [(pair.word, pair.flag) for pair in jieba.posseg.cut(text, HMM=hmm)]


# ---------------------------------------------------------------- text and filters


def clean_text(text: str | None, max_chars: int | None = None) -> str:
    """normalize_text (NFKC, invisible characters dropped, whitespace collapsed), cut to `max_chars`."""
    text = normalize_text(text)
    return text[:max_chars] if max_chars else text


def has_content(text: str) -> bool:
    """True when `text` has a Chinese character or a Latin letter (not only digits and symbols)."""
    return bool(_CJK_OR_LETTER.search(text or ""))


@lru_cache(maxsize=8)
def load_stopwords(path: str | None = None, extra: tuple[str, ...] = ()) -> frozenset[str]:
    """Lower-cased stopwords from a file (`#` comments allowed) plus `extra`."""
    lines = Path(path or STOPWORDS_FILE).read_text(encoding="utf-8").splitlines()
    words = {line.strip().lower() for line in lines if line.strip() and not line.startswith("#")}
    return frozenset(words | {w.lower() for w in extra})


def is_candidate(word: str, flag: str, config: KeywordConfig, stopwords: frozenset[str], fallback: bool = False) -> bool:
    """Whether a jieba word may be a keyword: length, stopwords, content and POS filters.

    With `fallback`, the POS filter is config.fallback_pos instead (verbs, adjectives, idioms):
    for texts such as "夜晚中正在看电视的人" whose only content word is a verb.
    """
    if not config.min_chars <= len(word) <= config.max_chars:
        return False
    if word.lower() in stopwords or not has_content(word):
        return False
    if fallback:
        return flag.startswith(config.fallback_pos) and flag not in config.entity_pos
    return flag in config.entity_pos or flag.startswith(config.tfidf_pos)


def document_terms(text: str, config: KeywordConfig = DEFAULT_CONFIG) -> list[str]:
    """The distinct candidate terms of one document: what its document frequency counts."""
    stopwords = load_stopwords(config.stopwords_file, config.extra_stopwords)
    terms = {
        w.lower()
        for w, f in tokenize(text, config.hmm)
        if is_candidate(w, f, config, stopwords) or is_candidate(w, f, config, stopwords, fallback=True)
    }
    return sorted(terms)


# ---------------------------------------------------------------- IDF


def idf_value(df: int, n_docs: int) -> float:
    """Smoothed IDF, ln((1 + N) / (1 + df)) + 1: positive, and defined for df = 0.

    The Spark job computes the same formula in SQL for the stored `keyword_idf` table.
    """
    return math.log((1 + n_docs) / (1 + df)) + 1.0


@dataclass
class Idf:
    """Term -> IDF weight, with `default` for terms it has not seen. Terms are lower-cased."""

    weights: dict[str, float]
    default: float
    source: str = "custom"  # "corpus", "jieba" or "custom": for logs and experiment tables

    def __getitem__(self, term: str) -> float:
        return self.weights.get(term.lower(), self.default)

    def __len__(self) -> int:
        return len(self.weights)

    @classmethod
    def from_counts(cls, df: Mapping[str, int], n_docs: int, min_df: int = 1) -> "Idf":
        """From document frequencies over `n_docs` documents; terms below `min_df` count as unseen.

        An unseen term gets the IDF of the rarest kept term class (df = min_df - 1), so a word
        pruned for rarity still ranks as rare.
        """
        if n_docs < 1:
            raise ValueError(f"n_docs must be >= 1, got {n_docs}")
        weights = {t.lower(): idf_value(d, n_docs) for t, d in df.items() if d >= min_df}
        return cls(weights, default=idf_value(min_df - 1, n_docs), source="corpus")

    @classmethod
    def from_documents(cls, texts: Iterable[str], config: KeywordConfig = DEFAULT_CONFIG) -> "Idf":
        """Count document frequencies in a plain loop (the Spark job does this as an aggregate)."""
        counts: dict[str, int] = {}
        n_docs = 0
        for text in texts:
            text = clean_text(text, config.max_text_chars)
            if not has_content(text):
                continue
            n_docs += 1
            for term in document_terms(text, config):
                counts[term] = counts.get(term, 0) + 1
        return cls.from_counts(counts, max(n_docs, 1), config.min_df)

    @classmethod
    def builtin(cls) -> "Idf":
        """jieba's own IDF table (general-domain Chinese); unknown terms get its median, as jieba does."""
        return _jieba_idf()


@lru_cache(maxsize=1)
def _jieba_idf() -> Idf:
    import jieba

    weights: dict[str, float] = {}
    # The file jieba.analyse loads ("word idf" lines); read directly, without importing jieba.analyse.
    for line in (Path(jieba.__file__).parent / "analyse" / "idf.txt").read_text(encoding="utf-8").splitlines():
        word, _, value = line.strip().rpartition(" ")
        if word:
            weights[word.lower()] = float(value)
    median = sorted(weights.values())[len(weights) // 2]
    return Idf(weights, default=median, source="jieba")


# ---------------------------------------------------------------- ranking


@dataclass(frozen=True)
class Keyword:
    word: str  # the first surface form seen in the text
    score: float  # (weighted) count x IDF (x entity_boost for entities)
    entity: bool  # tagged as a named entity by jieba.posseg
    position: int  # index of its first token in the text, for reading order


def rank_tokens(
    tokens: list[tuple[str, str]],
    idf: Idf | None = None,
    config: KeywordConfig = DEFAULT_CONFIG,
    weights: list[float] | None = None,
) -> list[Keyword]:
    """All candidate keywords of tokenized text, best first (ties: earlier in the text first).

    `weights` (one per token, default 1) scale what each occurrence adds to the term count: a
    video's title words count `title_weight` times. The fallback POS tier is used only when no
    word passes the main one.
    """
    idf = Idf.builtin() if idf is None else idf
    stopwords = load_stopwords(config.stopwords_file, config.extra_stopwords)
    fallback = not any(is_candidate(w, f, config, stopwords) for w, f in tokens)
    counts: dict[str, float] = {}
    first: dict[str, tuple[int, str]] = {}
    entities: set[str] = set()
    for i, (word, flag) in enumerate(tokens):
        if not is_candidate(word, flag, config, stopwords, fallback):
            continue
        key = word.lower()
        counts[key] = counts.get(key, 0.0) + (1.0 if weights is None else weights[i])
        first.setdefault(key, (i, word))
        if flag in config.entity_pos:
            entities.add(key)
    ranked = [
        Keyword(
            word=first[key][1],
            score=n * idf[key] * (config.entity_boost if key in entities else 1.0),
            entity=key in entities,
            position=first[key][0],
        )
        for key, n in counts.items()
    ]
    ranked.sort(key=lambda k: (-k.score, k.position))
    if config.drop_contained:
        ranked = _drop_contained(ranked)
    return ranked


def _drop_contained(ranked: list[Keyword]) -> list[Keyword]:
    """Keep a keyword only when no better one contains it or is contained in it ("悟空" vs "黑神话悟空")."""
    kept: list[Keyword] = []
    for kw in ranked:
        low = kw.word.lower()
        if not any(low in k.word.lower() or k.word.lower() in low for k in kept):
            kept.append(kw)
    return kept


def rank_keywords(text: str, idf: Idf | None = None, config: KeywordConfig = DEFAULT_CONFIG) -> list[Keyword]:
    """The top_k keywords of `text` with their scores, best first."""
    text = clean_text(text, config.max_text_chars)
    return rank_tokens(tokenize(text, config.hmm), idf, config)[: config.top_k]


def extract_keywords(text: str, idf: Idf | None = None, config: KeywordConfig = DEFAULT_CONFIG) -> list[str]:
    """The top_k keywords of `text`, best first: TF-IDF ranked, named entities boosted, de-duplicated.

    >>> extract_keywords("《黑神话：悟空》评测：踏平坎坷成大道")[:2]   # doctest: +SKIP
    ['黑神话', '悟空']
    """
    return [k.word for k in rank_keywords(text, idf, config)]
