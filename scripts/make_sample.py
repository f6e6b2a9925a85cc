"""Build the small sample of real data shipped in hcmrm/sample/ (run once; its outputs are committed).

    python scripts/make_sample.py [--source /work/shared/data] [--out hcmrm/sample]

Reads the public data sets in ../shared/data (each folder has a SOURCE.txt) and writes:
  videos.parquet          Flickr8k-CN photos (frames = JPEG bytes) + all Bilibili videos (no frames)
  ads.parquet             one ad per video (+ ads pointing at missing videos)
  query_ad_pairs.parquet  Multi-CPR video search queries x ads, two dates
  labeled/kuake_qtr_{train,dev}.jsonl   KUAKE-QTR graded pairs (label 0..3)
A few deliberately bad rows exercise the rejects paths; hcmrm/sample/SOURCE.md lists them.
Everything is drawn from one seeded random.Random, so a rerun writes the same files.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SEED = 20240901
REPO_ROOT = Path(__file__).resolve().parents[1]

N_PHOTOS = 200  # Flickr8k-CN photos kept (~18 KB of JPEG each)
VIDEO_DATES = ("2024-08-25", "2024-09-01")  # catalogue dates: photos, then Bilibili videos
PAIR_DATES = ("2024-09-10", "2024-09-11")  # query_ad_pairs dates
QUERIES_PER_DATE = 400  # distinct Multi-CPR queries per date
OVERLAP_ADS = 2  # ads per query chosen by character overlap with the video title (likely relevant)
RANDOM_ADS = 2  # ads per query drawn at random (likely irrelevant)
ACTIVE_ADS = 200  # ads "in rotation" on a date, from which the random ones are drawn
MIN_OVERLAP = 4  # overlap score (shared chars + 2 x shared bigrams) of a "matched" ad: about one shared word
KUAKE_TRAIN_ROWS = 3000
KUAKE_DEV_ROWS = 500

# Characters that say nothing about a topic; ignored when matching queries to titles.
STOP_CHARS = set("的了是在和与及或之一个么吗呢啊吧着也就都而被把这那有我你他她它们上下中大小不请播放看集全部最新版")

# Bilibili zone tags (the uploader's tag list always carries the zone) -> industry code.
ZONES = {
    "游戏": "game", "手机游戏": "game", "单机游戏": "game", "网络游戏": "game", "电子竞技": "game",
    "动画": "animation", "番剧": "animation", "国创": "animation",
    "影视": "film", "电影": "film", "电视剧": "film", "纪录片": "film",
    "知识": "knowledge", "科技": "tech", "数码": "tech",
    "美食": "food", "音乐": "music", "舞蹈": "dance", "娱乐": "entertainment", "鬼畜": "entertainment",
    "搞笑": "entertainment", "动物圈": "animals", "时尚": "fashion", "运动": "sports", "体育": "sports",
    "汽车": "cars", "生活": "lifestyle", "资讯": "news",
}

VIDEO_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("title", pa.string()),
        ("ocr_text", pa.string()),
        ("asr_text", pa.string()),
        ("frames", pa.list_(pa.binary())),
        ("dt", pa.string()),
    ]
)
AD_SCHEMA = pa.schema(
    [("ad_id", pa.string()), ("video_id", pa.string()), ("advertiser", pa.string()), ("industry", pa.string())]
)
PAIR_SCHEMA = pa.schema(
    [("dt", pa.string()), ("query", pa.string()), ("ad_id", pa.string()), ("impressions", pa.int64())]
)


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_parquet(rows: list[dict], schema: pa.Schema, path: Path) -> None:
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path, compression="snappy")


# --- videos -------------------------------------------------------------------------------------


def flickr_videos(source: Path, rng: random.Random) -> tuple[list[dict], list[dict]]:
    """N_PHOTOS photos as one-frame videos, and the photos left over (for the bad rows)."""
    photos = sorted(read_jsonl(source / "flickr8k_cn_1k" / "captions.jsonl"), key=lambda r: r["image"])
    photos = [p for p in photos if len(p["zh_human"]) >= 2]
    picked = set(rng.sample(range(len(photos)), N_PHOTOS))
    videos = []
    for i in sorted(picked):
        p = photos[i]
        path = source / "flickr8k_cn_1k" / p["image"]
        videos.append(
            {
                "video_id": f"flickr-{path.stem}",
                "title": p["zh_human"][0],
                "ocr_text": "。".join(c.rstrip("。") for c in p["zh_human"][1:]),
                "asr_text": None,
                "frames": [path.read_bytes()],
                "dt": VIDEO_DATES[0],
            }
        )
    left = [photos[i] for i in range(len(photos)) if i not in picked]
    return videos, left


def bilibili_rows(source: Path) -> list[dict]:
    return read_jsonl(source / "bilibili_top100_titles" / "videos_dedup.jsonl")


def bilibili_desc(desc: str | None) -> str | None:
    desc = (desc or "").strip()
    return None if desc in ("", "-", "Not Found") else desc


def bilibili_videos(rows: list[dict]) -> list[dict]:
    return [
        {
            "video_id": f"bili-{r['bvid']}",
            "title": r["title"],
            "ocr_text": bilibili_desc(r["desc"]),
            "asr_text": None,
            "frames": [],
            "dt": VIDEO_DATES[1],
        }
        for r in rows
    ]


def bad_videos(left_photos: list[dict], source: Path, rng: random.Random) -> list[dict]:
    """Rows a job must reject with a reason: two undecodable frames, two without usable text."""
    donors = rng.sample(left_photos, 3)
    bad = []
    for n, p in enumerate(donors[:2], start=1):
        bad.append(
            {
                "video_id": f"bad-frame-{n:02d}",
                "title": p["zh_human"][0],
                "ocr_text": None,
                "asr_text": None,
                "frames": [rng.randbytes(512)],  # not an image: decoding must fail
                "dt": VIDEO_DATES[1],
            }
        )
    bad.append(
        {"video_id": "bad-text-01", "title": "", "ocr_text": None, "asr_text": None, "frames": [], "dt": VIDEO_DATES[1]}
    )
    bad.append(
        {
            "video_id": "bad-text-02",
            "title": " \t ",
            "ocr_text": "  ",
            "asr_text": "\n",
            "frames": [(source / "flickr8k_cn_1k" / donors[2]["image"]).read_bytes()],  # a good frame, no text
            "dt": VIDEO_DATES[1],
        }
    )
    return bad


# --- ads ----------------------------------------------------------------------------------------


def industry_of(tags: str) -> str:
    """The first zone tag of a Bilibili tag list ("['游戏', ...]"), as an industry code."""
    try:
        tag_list = ast.literal_eval(tags)
    except (ValueError, SyntaxError):
        tag_list = []
    for tag in tag_list:
        if tag in ZONES:
            return ZONES[tag]
    return "other"


def make_ads(videos: list[dict], bili: list[dict]) -> list[dict]:
    by_vid = {f"bili-{r['bvid']}": r for r in bili}
    ads = []
    for v in videos:
        r = by_vid.get(v["video_id"])
        if r is not None:
            advertiser, industry = r["uploader"], industry_of(r["tags"])
        else:  # photos and the bad rows
            advertiser, industry = "flickr", "photo"
        ads.append({"video_id": v["video_id"], "advertiser": advertiser, "industry": industry})
    # Ads whose video is not in the catalogue: scoring must reject them, not drop them silently.
    for n in (1, 2):
        ads.append({"video_id": f"missing-video-{n:02d}", "advertiser": "unknown", "industry": "other"})
    return [{"ad_id": f"ad-{i:04d}", **a} for i, a in enumerate(ads, start=1)]


# --- query_ad_pairs -----------------------------------------------------------------------------


def topic_chars(text: str) -> set[str]:
    return {c for c in text if c.isalnum() and c not in STOP_CHARS}


def bigrams(text: str) -> set[str]:
    return {text[i : i + 2] for i in range(len(text) - 1) if text[i].isalnum() and text[i + 1].isalnum()}


def read_queries(source: Path) -> list[str]:
    queries = []
    with (source / "multicpr_video_queries" / "train.query.txt").open(encoding="utf-8") as f:
        for line in f:
            _, _, query = line.rstrip("\n").partition("\t")
            if query.strip():
                queries.append(query.strip())
    return sorted(set(queries))


class TitleIndex:
    """Ads indexed by the characters of their video's title, to find the best-overlapping ones fast."""

    def __init__(self, ads: list[dict], titles: dict[str, str]):
        self.ads = [a for a in ads if titles.get(a["video_id"], "").strip()]
        self.chars = [topic_chars(titles[a["video_id"]]) for a in self.ads]
        self.grams = [bigrams(titles[a["video_id"]]) for a in self.ads]
        self.by_char: dict[str, list[int]] = defaultdict(list)
        for i, chars in enumerate(self.chars):
            for c in chars:
                self.by_char[c].append(i)

    def best(self, query: str, k: int) -> list[tuple[int, str]]:
        """Up to k (score, ad_id) with score = shared characters + 2 x shared bigrams, best first."""
        q_chars, q_grams = topic_chars(query), bigrams(query)
        candidates = {i for c in q_chars for i in self.by_char.get(c, ())}
        scored = [
            (len(q_chars & self.chars[i]) + 2 * len(q_grams & self.grams[i]), self.ads[i]["ad_id"]) for i in candidates
        ]
        scored.sort(key=lambda s: (-s[0], s[1]))
        return scored[:k]


def make_pairs(queries: list[str], ads: list[dict], videos: list[dict], rng: random.Random) -> list[dict]:
    titles = {v["video_id"]: v["title"] for v in videos}
    index = TitleIndex(ads, titles)
    ad_ids = [a["ad_id"] for a in ads]
    rows, chosen_by_date = [], {}
    for dt in PAIR_DATES:
        # Keep queries that share about a word with some title, as a search log for these ads would.
        pool = rng.sample(queries, QUERIES_PER_DATE * 10)
        chosen = [q for q in pool if (index.best(q, 1) or [(0, "")])[0][0] >= MIN_OVERLAP][:QUERIES_PER_DATE]
        chosen_by_date[dt] = chosen
        active = rng.sample(ad_ids, ACTIVE_ADS)
        seen = set()
        for q in chosen:
            picks = [(ad, True) for score, ad in index.best(q, OVERLAP_ADS) if score >= MIN_OVERLAP]
            picks += [(ad, False) for ad in rng.sample(active, RANDOM_ADS)]
            for ad, matched in picks:
                if (q, ad) in seen:
                    continue
                seen.add((q, ad))
                # Matched ads are shown more often: heavier-tailed impression counts.
                mean = 120 if matched else 30
                rows.append({"dt": dt, "query": q, "ad_id": ad, "impressions": 1 + int(rng.expovariate(1 / mean))})
    rows.sort(key=lambda r: (r["dt"], r["query"], r["ad_id"]))
    # Bad rows: a null query, a blank query, an ad_id that is not in ads.
    d1, d2 = PAIR_DATES
    rows += [
        {"dt": d1, "query": None, "ad_id": ad_ids[0], "impressions": 5},
        {"dt": d2, "query": "   ", "ad_id": ad_ids[1], "impressions": 3},
        {"dt": d1, "query": chosen_by_date[d1][0], "ad_id": "ad-9999", "impressions": 7},
        {"dt": d2, "query": chosen_by_date[d2][0], "ad_id": "ad-9999", "impressions": 2},
    ]
    # Make sure the ads with a missing video, and those of the bad videos, are asked for on both dates.
    bad_ads = [a["ad_id"] for a in ads if not a["video_id"].startswith(("flickr-", "bili-"))]
    for dt in PAIR_DATES:
        for ad in bad_ads:
            if not any(r["dt"] == dt and r["ad_id"] == ad for r in rows):
                rows.append({"dt": dt, "query": chosen_by_date[dt][1], "ad_id": ad, "impressions": 4})
    return rows


# --- labeled pairs ------------------------------------------------------------------------------


def label_quotas(items: list[dict], n_rows: int) -> dict[str, int]:
    """Rows per label in a sample of n_rows with the full set's label shares (largest remainder)."""
    counts = Counter(item["label"] for item in items)
    exact = {label: n_rows * c / len(items) for label, c in counts.items()}
    quotas = {label: int(x) for label, x in exact.items()}
    for label in sorted(exact, key=lambda k: quotas[k] - exact[k])[: n_rows - sum(quotas.values())]:
        quotas[label] += 1
    return quotas


def sample_by_query(items: list[dict], n_rows: int, rng: random.Random) -> list[dict]:
    """Exactly n_rows rows, stratified by label, made of whole queries (a query's candidates stay
    together, for per-query metrics): queries in random order, each taken if it fits every label's quota."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for item in items:
        groups[item["query"]].append(item)
    quotas = label_quotas(items, n_rows)
    taken: Counter = Counter()
    order = sorted(groups)
    rng.shuffle(order)
    out: list[dict] = []
    for q in order:
        need = Counter(r["label"] for r in groups[q])
        if all(taken[label] + k <= quotas[label] for label, k in need.items()):
            out.extend(groups[q])
            taken.update(need)
        if len(out) == n_rows:
            break
    if len(out) != n_rows:
        raise RuntimeError(f"could not fill {n_rows} rows by whole queries (got {len(out)})")
    return [{"query": r["query"], "title": r["title"], "label": int(r["label"])} for r in out]


def write_jsonl(rows: list[dict], path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "hcmrm" / "sample")
    args = parser.parse_args()
    rng = random.Random(SEED)
    out: Path = args.out
    (out / "labeled").mkdir(parents=True, exist_ok=True)

    photos, left = flickr_videos(args.source, rng)
    bili = bilibili_rows(args.source)
    videos = photos + bilibili_videos(bili) + bad_videos(left, args.source, rng)
    ads = make_ads(videos, bili)
    pairs = make_pairs(read_queries(args.source), ads, videos, rng)
    kuake = args.source / "kuake_qtr"
    train = sample_by_query(json.loads((kuake / "KUAKE-QTR_train.json").read_text("utf-8")), KUAKE_TRAIN_ROWS, rng)
    dev = sample_by_query(json.loads((kuake / "KUAKE-QTR_dev.json").read_text("utf-8")), KUAKE_DEV_ROWS, rng)

    write_parquet(videos, VIDEO_SCHEMA, out / "videos.parquet")
    write_parquet(ads, AD_SCHEMA, out / "ads.parquet")
    write_parquet(pairs, PAIR_SCHEMA, out / "query_ad_pairs.parquet")
    write_jsonl(train, out / "labeled" / "kuake_qtr_train.jsonl")
    write_jsonl(dev, out / "labeled" / "kuake_qtr_dev.jsonl")

    # The facts SOURCE.md quotes.
    by_dt = dict(Counter(v["dt"] for v in videos))
    print(f"videos: {len(videos)} ({len(photos)} photos, {len(bili)} bilibili, 4 bad) by dt {by_dt}")
    print(f"  with ocr_text: {sum(v['ocr_text'] is not None for v in videos)}")
    print(f"ads: {len(ads)}; industries {dict(Counter(a['industry'] for a in ads).most_common())}")
    print(f"  advertisers: {len({a['advertiser'] for a in ads})}")
    for dt in PAIR_DATES:
        day = [p for p in pairs if p["dt"] == dt]
        queries, day_ads = len({p["query"] for p in day}), len({p["ad_id"] for p in day})
        impressions = sum(p["impressions"] for p in day)
        print(f"pairs {dt}: {len(day)} rows, {queries} queries, {day_ads} ads, {impressions} impressions")
    for name, rows in (("train", train), ("dev", dev)):
        labels = Counter(r["label"] for r in rows)
        queries = len({r["query"] for r in rows})
        print(f"kuake {name}: {len(rows)} rows, {queries} queries, labels {sorted(labels.items())}")
    for f in sorted(out.rglob("*")):
        if f.is_file():
            print(f"  {f.relative_to(out)}: {f.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
