"""How good are our keywords and pseudo-queries, measured against references no one here wrote.

1. Keywords vs TNEWS source keywords (tnews_keywords/{dev,test}.json, rows with keywords) and vs
   Bilibili uploader tags (bilibili_top100_titles/videos_dedup.jsonl; text = title + description):
   precision@k and recall@k, with jieba's built-in IDF and with a corpus IDF computed from the
   evaluated texts themselves (what the Spark job does with its input).
     P@k = matched keywords among our first k / how many we returned among the first k (<= k)
     R@k = matched references / all references;  R@k (in text) = the same over the references
           that occur in the text, the only ones an extractor can return.
   A match is case-insensitive exact string equality after NFKC.
2. Pseudo-queries (Bilibili titles + descriptions, and THUCNews titles) vs real Youku video-search
   queries (multicpr_video_queries/train.query.txt): length in characters and in jieba words, and
   character overlap (share of pseudo-query characters that occur in the real queries' character
   set; histogram intersection of the two character distributions). Raw titles are the baseline.

Reads /work/shared/data (or --data). Run:
    .venv/bin/python experiments/keyword_quality.py            # the numbers in docs/pseudo_queries.md
    .venv/bin/python experiments/keyword_quality.py --grid     # the settings sweep on TNEWS dev
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import random
import statistics
import time
import unicodedata
from collections import Counter
from pathlib import Path

from hcmrm.text.keywords import Idf, KeywordConfig, clean_text, document_terms, has_content, rank_tokens, tokenize
from hcmrm.text.pseudo_query import video_pseudo_query, video_text

DATA = Path("/work/shared/data")
KS = (1, 3, 5)


def norm(word: str) -> str:
    return unicodedata.normalize("NFKC", word).strip().lower()


# ---------------------------------------------------------------- data


def tnews(data: Path, split: str) -> list[tuple[str, str, list[str]]]:
    """(title, other text, reference keywords): headlines have no other text."""
    rows = [json.loads(line) for line in (data / "tnews_keywords" / f"{split}.json").open(encoding="utf-8")]
    return [(r["sentence"], "", [k for k in r["keywords"].split(",") if k]) for r in rows if r["keywords"].strip()]


def bilibili(data: Path) -> list[tuple[str, str, list[str]]]:
    """(title, description in the OCR/ASR slot, uploader tags)."""
    out = []
    for line in (data / "bilibili_top100_titles" / "videos_dedup.jsonl").open(encoding="utf-8"):
        r = json.loads(line)
        desc = "" if r["desc"].strip() in ("-", "Not Found") else r["desc"]
        tags = list(dict.fromkeys(ast.literal_eval(r["tags"])))  # uploader tags repeat; keep first of each
        out.append((r["title"], desc, tags))
    return out


def thucnews(data: Path) -> list[str]:
    return [line.split("\t")[0] for line in (data / "thucnews_titles" / "test.txt").open(encoding="utf-8")]


def multicpr(data: Path) -> list[str]:
    lines = (data / "multicpr_video_queries" / "train.query.txt").open(encoding="utf-8")
    return [line.rstrip("\n").split("\t", 1)[1] for line in lines if "\t" in line]


# ---------------------------------------------------------------- keyword metrics


def score(predicted: list[list[str]], references: list[list[str]], texts: list[str]) -> dict:
    """Mean P@k, R@k and R@k over in-text references, for k in KS."""
    out: dict[str, float] = {}
    for k in KS:
        p, r, r_in, n_in = [], [], [], 0
        for pred, ref, text in zip(predicted, references, texts):
            refs = {norm(w) for w in ref}
            top = [norm(w) for w in pred[:k]]
            hits = sum(w in refs for w in top)
            p.append(hits / len(top) if top else 0.0)
            r.append(hits / len(refs))
            in_text = {w for w in refs if w in norm(text)}
            if in_text:
                n_in += 1
                r_in.append(sum(w in in_text for w in top) / len(in_text))
        out[f"P@{k}"] = statistics.mean(p)
        out[f"R@{k}"] = statistics.mean(r)
        out[f"R@{k} in text"] = statistics.mean(r_in) if r_in else 0.0
    out["returned"] = statistics.mean(min(len(x), max(KS)) for x in predicted)
    return out


def evaluate(rows: list[tuple[str, str, list[str]]], config: KeywordConfig, idf_kind: str, cache: dict) -> dict:
    """Score the top keywords of each (title, other) against its references, title words weighted."""
    fields = [(clean_text(t, config.max_text_chars), clean_text(o, config.max_text_chars)) for t, o, _ in rows]
    tokens = cache.setdefault(("tokens", config.hmm), {})
    for pair in fields:
        for f in pair:
            if f not in tokens:
                tokens[f] = tokenize(f, config.hmm) if f else []
    texts = [" ".join(f for f in pair if f) for pair in fields]
    if idf_kind == "jieba":
        idf = Idf.builtin()
    else:  # document frequencies over the evaluated texts themselves, as the Spark job does
        counts: Counter = Counter()
        docs = [t for t in texts if has_content(t)]
        for t in docs:
            counts.update(document_terms(t, config))
        idf = Idf.from_counts(counts, len(docs), config.min_df)
    predicted = []
    for title, other in fields:
        toks = tokens[title] + tokens[other]
        weights = [config.title_weight] * len(tokens[title]) + [1.0] * len(tokens[other])
        predicted.append([kw.word for kw in rank_tokens(toks, idf, config, weights)[: max(KS)]])
    return score(predicted, [r for _, _, r in rows], texts)


def table(results: list[tuple[str, dict]]) -> str:
    cols = [f"{m}@{k}" for k in KS for m in ("P", "R")] + [f"R@{k} in text" for k in KS] + ["returned"]
    lines = ["| setting | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, res in results:
        lines.append(f"| {name} | " + " | ".join(f"{res[c]:.3f}" for c in cols) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- pseudo-queries vs real queries


def length_tv(a: list[int], b: list[int]) -> float:
    """Total variation distance between two length histograms (0 = same, 1 = disjoint)."""
    ca, cb = Counter(a), Counter(b)
    return 0.5 * sum(abs(ca[k] / len(a) - cb[k] / len(b)) for k in set(ca) | set(cb))


def describe(strings: list[str], ref: list[str], ref_dist: Counter, hmm: bool) -> dict:
    lengths = sorted(len(s) for s in strings)
    words = [sum(1 for w, _ in tokenize(s, hmm) if w.strip()) for s in strings]
    chars = Counter(c for s in strings for c in s if not c.isspace())
    total, ref_total = sum(chars.values()), sum(ref_dist.values())
    return {
        "n": len(strings),
        "chars mean": statistics.mean(lengths),
        "chars p10/p50/p90": "/".join(str(lengths[int(q * (len(lengths) - 1))]) for q in (0.1, 0.5, 0.9)),
        "words mean": statistics.mean(words),
        "length TV vs real": length_tv(lengths, [len(q) for q in ref]),
        "char coverage": sum(n for c, n in chars.items() if c in ref_dist) / total,
        "char hist. intersection": sum(min(n / total, ref_dist.get(c, 0) / ref_total) for c, n in chars.items()),
    }


def query_report(data: Path, config: KeywordConfig, sample: int) -> str:
    queries = multicpr(data)
    ref_dist = Counter(c for q in queries for c in q if not c.isspace())
    rng = random.Random(0)
    ref_sample = rng.sample(queries, min(sample, len(queries)))
    rows = [(f"Multi-CPR real queries ({len(ref_sample):,} of {len(queries):,})",
             describe(ref_sample, queries, ref_dist, config.hmm))]
    videos = [(t, o) for t, o, _ in bilibili(data)]
    thuc = [(t, "") for t in thucnews(data)[:sample]]
    for name, items in (("Bilibili", videos), ("THUCNews", thuc)):
        idf = Idf.from_documents([video_text(t, o, None) for t, o in items], config)
        for low, high in ((1, 3), (1, 5), (2, 5)):
            cfg = dataclasses.replace(config, query_min_keywords=low, query_max_keywords=high)
            pqs = [video_pseudo_query(str(i), t, o, None, idf, cfg, seed=0) for i, (t, o) in enumerate(items)]
            pqs = [p.pseudo_query for p in pqs if p is not None]
            mark = " (default)" if (low, high) == (config.query_min_keywords, config.query_max_keywords) else ""
            rows.append((f"pseudo-queries from {name}, {low}..{high} keywords{mark}",
                         describe(pqs, queries, ref_dist, config.hmm)))
        rows.append((f"baseline: raw {name} titles", describe([t for t, _ in items], queries, ref_dist, config.hmm)))
    cols = list(rows[0][1])
    lines = ["| text | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, res in rows:
        cells = [f"{res[c]:.3f}" if isinstance(res[c], float) else str(res[c]) for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    idf = Idf.from_documents([video_text(t, o, None) for t, o in videos], config)
    lines.append("\nexamples (Bilibili title -> pseudo-query, corpus IDF, default sampling):")
    for i, (t, o) in enumerate(videos[:8]):
        p = video_pseudo_query(str(i), t, o, None, idf, config, seed=0)
        lines.append(f"- {t[:40]} -> {p.pseudo_query if p else None}")
    lines.append("\nreal queries: " + ", ".join(ref_sample[:10]))
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def grid(data: Path) -> None:
    """Settings sweep on TNEWS dev (the test split is kept for the reported numbers)."""
    rows = tnews(data, "dev")
    cache: dict = {}
    base = KeywordConfig()
    variants = {
        "default": base,
        "hmm off": dataclasses.replace(base, hmm=False),
        "no entity boost": dataclasses.replace(base, entity_boost=1.0),
        "entity boost 4": dataclasses.replace(base, entity_boost=4.0),
        "nouns only (no vn)": dataclasses.replace(base, tfidf_pos=("n", "eng")),
        "nouns+verbs": dataclasses.replace(base, tfidf_pos=("n", "v", "eng")),
        "nouns+verbs+adj": dataclasses.replace(base, tfidf_pos=("n", "v", "eng", "a")),
        "keep contained": dataclasses.replace(base, drop_contained=False),
        "no fallback POS": dataclasses.replace(base, fallback_pos=()),
        "all POS": dataclasses.replace(base, tfidf_pos=("",)),
    }
    results = []
    for name, config in variants.items():
        for idf_kind in ("jieba", "corpus"):
            results.append((f"{name}, {idf_kind} IDF", evaluate(rows, config, idf_kind, cache)))
            print(table(results[-1:]).splitlines()[-1], flush=True)
    print(table(results))
    videos = bilibili(data)
    weights = [(f"title_weight {w}, {kind} IDF", evaluate(videos, dataclasses.replace(base, title_weight=w), kind, cache))
               for w in (1.0, 2.0, 3.0) for kind in ("jieba", "corpus")]
    print("\nBilibili (title + description):\n" + table(weights))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    parser.add_argument("--grid", action="store_true", help="sweep settings on TNEWS dev instead")
    parser.add_argument("--sample", type=int, default=10000, help="texts per set for the query comparison")
    parser.add_argument("--out", type=Path, help="also write the report here (markdown)")
    args = parser.parse_args()
    if args.grid:
        grid(args.data)
        return
    config = KeywordConfig()
    start = time.time()
    cache: dict = {}
    sets = {
        "TNEWS test (5,832 with keywords)": tnews(args.data, "test"),
        "Bilibili (1,121, title + description)": bilibili(args.data),
    }
    report = [f"config: {config}\n"]
    for name, rows in sets.items():
        results = [(f"{kind} IDF", evaluate(rows, config, kind, cache)) for kind in ("jieba", "corpus")]
        report += [f"### keywords vs {name}", table(results), ""]
    report += ["### pseudo-queries vs Multi-CPR video queries", query_report(args.data, config, args.sample), ""]
    report.append(f"({time.time() - start:.0f} s)")
    text = "\n".join(report)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
