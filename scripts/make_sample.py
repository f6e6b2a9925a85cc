"""Build the small sample of real data shipped in hcmrm/sample/ (run once; its outputs are committed).

    python scripts/make_sample.py [--source /work/shared/data] [--out hcmrm/sample]

Every pair of each day has a known true label, kept apart from the input tables (truth.parquet is read
only by the demo's simulated rater and its true-rate check, never by build-lake or a model):
  videos.parquet          Flickr8k-CN photos (frames = JPEG bytes; title and OCR = two of their five
                          captions) + QBQTC v1 dev titles as text-only videos
  ads.parquet             one ad per video (+ ads pointing at missing videos)
  query_ad_pairs.parquet  two dates: each photo against two of its three held-out captions (relevant) and
                          captions of unrelated photos (irrelevant); each QBQTC row's own query
  truth.parquet           (dt, query, ad_id) -> the true label 0..3 and where it comes from
  labeled/kuake_qtr_{train,dev}.jsonl   KUAKE-QTR graded pairs (label 0..3): what the demo fine-tunes on
None of the pairs comes from a set a shipped model trains on (KUAKE-QTR train, QBQTC v0): QBQTC rows whose
query occurs there are left out. A few deliberately bad rows exercise the rejects paths; SOURCE.md lists them.
Each part draws from its own seeded random.Random, so a rerun writes the same files.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SEED = 20240901
REPO_ROOT = Path(__file__).resolve().parents[1]

N_PHOTOS = 200  # Flickr8k-CN photos kept (~18 KB of JPEG each)
VIDEO_DATES = ("2024-08-25", "2024-09-01")  # catalogue dates: photos, then the text-only QBQTC videos
PAIR_DATES = ("2024-09-10", "2024-09-11")  # query_ad_pairs dates
OWN_CAPTIONS = 2  # relevant queries per photo and day: of its 3 captions the video's text does not hold
OTHER_CAPTIONS = {"2024-09-10": 1, "2024-09-11": 2}  # irrelevant queries per photo and day
QBQTC_ROWS = {"2024-09-10": 800, "2024-09-11": 700}  # QBQTC v1 dev rows per day (disjoint days)
QBQTC_SHARES = {2: 0.8, 1: 0.1, 0: 0.1}  # QBQTC grade -> share of a day's rows (the full set: 13% / 63% / 24%)
QBQTC_TO_LABEL = {0: 0, 1: 1, 2: 3}  # onto 0..3, as hcmrm.train.finetune.DEFAULT_LABEL_MAPS["qbqtc"]
OWN_LABEL, OTHER_LABEL = 3, 0  # a photo's own caption describes it fully (Excellent); an unrelated one: Bad
PHOTO_ADVERTISERS, WEB_ADVERTISERS = 8, 40  # synthetic advertiser ids, drawn per ad
KUAKE_TRAIN_ROWS = 3000
KUAKE_DEV_ROWS = 500

# Characters that say nothing about a topic; ignored when telling unrelated captions apart.
STOP_CHARS = set("的了是在和与及或之一个么吗呢啊吧着也就都而被把这那有我你他她它们上下中大小不请")
# The ad's industry: the first group with a word in the ad's text (else "other"); photos fall back to "lifestyle".
INDUSTRY_WORDS = {
    "pets": ("狗", "猫", "宠物"),
    "sports": ("球", "跑", "骑", "滑", "游泳", "冲浪", "比赛", "运动", "攀"),
    "outdoor": ("海", "湖", "河", "山", "沙滩", "雪", "草地", "公园"),
    "health": ("医", "病", "药", "症", "疼", "痛", "治", "孕", "健康"),
    "games": ("游戏", "手游", "攻略", "副本"),
    "education": ("考试", "学习", "作文", "学校", "大学", "题"),
    "tech": ("手机", "电脑", "软件", "下载", "系统", "苹果", "安卓", "微信"),
    "finance": ("股", "银行", "贷款", "保险", "理财", "基金"),
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
TRUTH_SCHEMA = pa.schema(
    [("dt", pa.string()), ("query", pa.string()), ("ad_id", pa.string()), ("label", pa.int32()),
     ("source", pa.string())]  # own_caption, other_caption or qbqtc_dev
)


def rng_for(part: str) -> random.Random:
    """One seeded generator per part of the sample, so changing one part leaves the others' draws alone."""
    return random.Random(f"{SEED}-{part}")


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_parquet(rows: list[dict], schema: pa.Schema, path: Path) -> None:
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path, compression="snappy")


def as_query(caption: str) -> str:
    """A caption as a search query: without its closing punctuation."""
    return caption.strip().rstrip("。.！!")


def topic_bigrams(text: str) -> set[str]:
    chars = [c for c in text if c.isalnum() and c not in STOP_CHARS]
    return {a + b for a, b in zip(chars, chars[1:])}


def industry_of(text: str, fallback: str = "other") -> str:
    for industry, words in INDUSTRY_WORDS.items():
        if any(w in text for w in words):
            return industry
    return fallback


# --- photos -------------------------------------------------------------------------------------


def pick_photos(source: Path) -> tuple[list[dict], list[dict]]:
    """N_PHOTOS photos (each with 5 captions), and the photos left over (for the bad rows)."""
    photos = sorted(read_jsonl(source / "flickr8k_cn_1k" / "captions.jsonl"), key=lambda r: r["image"])
    photos = [p for p in photos if len(p["zh_human"]) >= 5]
    picked = set(rng_for("photos").sample(range(len(photos)), N_PHOTOS))
    return [photos[i] for i in sorted(picked)], [photos[i] for i in range(len(photos)) if i not in picked]


def photo_videos(photos: list[dict], source: Path) -> list[dict]:
    """One-frame videos: title = caption 1, OCR = caption 2; captions 3..5 stay out, as its queries."""
    return [
        {
            "video_id": f"flickr-{Path(p['image']).stem}",
            "title": p["zh_human"][0],
            "ocr_text": p["zh_human"][1],
            "asr_text": None,
            "frames": [(source / "flickr8k_cn_1k" / p["image"]).read_bytes()],
            "dt": VIDEO_DATES[0],
        }
        for p in photos
    ]


def photo_pairs(photos: list[dict], ad_of: dict[str, str]) -> list[dict]:
    """Per day and photo: OWN_CAPTIONS of its held-out captions (relevant) and OTHER_CAPTIONS captions of
    photos sharing no topic bigram with any of its five (irrelevant), each row with its true label."""
    rng = rng_for("photo-pairs")
    grams = [set().union(*(topic_bigrams(c) for c in p["zh_human"])) for p in photos]
    rows = []
    for dt in PAIR_DATES:
        for i, p in enumerate(photos):
            ad = ad_of[f"flickr-{Path(p['image']).stem}"]
            for caption in rng.sample(p["zh_human"][2:], OWN_CAPTIONS):
                rows.append({"dt": dt, "query": as_query(caption), "ad_id": ad, "label": OWN_LABEL,
                             "source": "own_caption"})
            unrelated = [j for j in range(len(photos)) if not grams[i] & grams[j]]
            for j in rng.sample(unrelated, OTHER_CAPTIONS[dt]):
                rows.append({"dt": dt, "query": as_query(rng.choice(photos[j]["zh_human"])), "ad_id": ad,
                             "label": OTHER_LABEL, "source": "other_caption"})
    return rows


# --- QBQTC --------------------------------------------------------------------------------------


def training_queries(source: Path) -> set[str]:
    """Queries of the sets shipped models train on (KUAKE-QTR train, QBQTC v0): none may reach the demo."""
    kuake = json.loads((source / "kuake_qtr" / "KUAKE-QTR_train.json").read_text("utf-8"))
    v0 = [r for name in ("train", "dev") for r in read_jsonl(source / "qbqtc_v0_listwise" / f"{name}.json")]
    return {r["query"] for r in kuake} | {r["query"] for r in v0}


def pick_qbqtc(source: Path) -> dict[str, list[dict]]:
    """QBQTC v1 dev rows per day, QBQTC_SHARES of each grade, no query seen in training, days disjoint."""
    banned = training_queries(source)
    rows = [r for r in read_jsonl(source / "qbqtc" / "dev.json")
            if r["query"].strip() and r["title"].strip() and r["query"] not in banned]
    rng = rng_for("qbqtc")
    by_grade = defaultdict(list)
    for r in rows:
        by_grade[int(r["label"])].append(r)
    for grade in by_grade:
        rng.shuffle(by_grade[grade])
    days = {}
    for dt in PAIR_DATES:
        day = []
        for grade, share in QBQTC_SHARES.items():
            k = round(QBQTC_ROWS[dt] * share)
            day += by_grade[grade][:k]
            del by_grade[grade][:k]
        days[dt] = sorted(day, key=lambda r: r["id"])
    return days


def qbqtc_videos(days: dict[str, list[dict]]) -> list[dict]:
    rows = [r for dt in PAIR_DATES for r in days[dt]]
    return [{"video_id": f"qbqtc-{r['id']}", "title": r["title"], "ocr_text": None, "asr_text": None,
             "frames": [], "dt": VIDEO_DATES[1]} for r in rows]


def qbqtc_pairs(days: dict[str, list[dict]], ad_of: dict[str, str]) -> list[dict]:
    return [{"dt": dt, "query": r["query"], "ad_id": ad_of[f"qbqtc-{r['id']}"],
             "label": QBQTC_TO_LABEL[int(r["label"])], "source": "qbqtc_dev"}
            for dt in PAIR_DATES for r in days[dt]]


# --- bad rows -----------------------------------------------------------------------------------


def bad_videos(left_photos: list[dict], source: Path) -> list[dict]:
    """Rows a job must reject with a reason: two undecodable frames, two without usable text."""
    rng = rng_for("bad-videos")
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


def bad_pairs(rows: list[dict], ads: list[dict]) -> list[dict]:
    """A null query, a blank query, an ad_id not in ads, and on both dates the ads whose video is bad or
    missing: rejected by score, so they have no true label."""
    rng = rng_for("bad-pairs")
    d1, d2 = PAIR_DATES
    queries = {dt: sorted({r["query"] for r in rows if r["dt"] == dt}) for dt in PAIR_DATES}
    ad_ids = [a["ad_id"] for a in ads]
    bad = [
        {"dt": d1, "query": None, "ad_id": ad_ids[0], "impressions": 5},
        {"dt": d2, "query": "   ", "ad_id": ad_ids[1], "impressions": 3},
        {"dt": d1, "query": rng.choice(queries[d1]), "ad_id": "ad-9999", "impressions": 7},
        {"dt": d2, "query": rng.choice(queries[d2]), "ad_id": "ad-9999", "impressions": 2},
    ]
    bad_ads = [a["ad_id"] for a in ads if not a["video_id"].startswith(("flickr-", "qbqtc-"))]
    for dt in PAIR_DATES:
        bad += [{"dt": dt, "query": rng.choice(queries[dt]), "ad_id": ad, "impressions": 4} for ad in bad_ads]
    return bad


# --- ads and pairs ------------------------------------------------------------------------------


def make_ads(videos: list[dict]) -> list[dict]:
    rng = rng_for("ads")
    ads = []
    for v in videos:
        text = f"{v['title']} {v['ocr_text'] or ''}"
        if v["video_id"].startswith("flickr-"):
            advertiser = f"photo-{rng.randrange(PHOTO_ADVERTISERS) + 1:02d}"
            industry = industry_of(text, "lifestyle")
        elif v["video_id"].startswith("qbqtc-"):
            advertiser, industry = f"web-{rng.randrange(WEB_ADVERTISERS) + 1:02d}", industry_of(text)
        else:  # the bad rows
            advertiser, industry = "bad", "other"
        ads.append({"video_id": v["video_id"], "advertiser": advertiser, "industry": industry})
    # Ads whose video is not in the catalogue: scoring must reject them, not drop them silently.
    for n in (1, 2):
        ads.append({"video_id": f"missing-video-{n:02d}", "advertiser": "unknown", "industry": "other"})
    return [{"ad_id": f"ad-{i:04d}", **a} for i, a in enumerate(ads, start=1)]


def unique_truth(rows: list[dict]) -> list[dict]:
    """One row per (dt, query, ad_id): a repeat (two photos with the same caption) keeps its first label."""
    seen, out = set(), []
    for r in rows:
        key = (r["dt"], r["query"], r["ad_id"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return sorted(out, key=lambda r: (r["dt"], r["query"], r["ad_id"]))


def with_impressions(truth: list[dict]) -> list[dict]:
    rng = rng_for("impressions")
    return [{"dt": r["dt"], "query": r["query"], "ad_id": r["ad_id"], "impressions": 1 + int(rng.expovariate(1 / 60))}
            for r in truth]


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
    out: Path = args.out
    (out / "labeled").mkdir(parents=True, exist_ok=True)

    photos, left = pick_photos(args.source)
    qbqtc = pick_qbqtc(args.source)
    videos = photo_videos(photos, args.source) + qbqtc_videos(qbqtc) + bad_videos(left, args.source)
    ads = make_ads(videos)
    ad_of = {a["video_id"]: a["ad_id"] for a in ads}
    truth = unique_truth(photo_pairs(photos, ad_of) + qbqtc_pairs(qbqtc, ad_of))
    pairs = with_impressions(truth) + bad_pairs(truth, ads)
    kuake = args.source / "kuake_qtr"
    rng = rng_for("kuake")
    train = sample_by_query(json.loads((kuake / "KUAKE-QTR_train.json").read_text("utf-8")), KUAKE_TRAIN_ROWS, rng)
    dev = sample_by_query(json.loads((kuake / "KUAKE-QTR_dev.json").read_text("utf-8")), KUAKE_DEV_ROWS, rng)

    write_parquet(videos, VIDEO_SCHEMA, out / "videos.parquet")
    write_parquet(ads, AD_SCHEMA, out / "ads.parquet")
    write_parquet(pairs, PAIR_SCHEMA, out / "query_ad_pairs.parquet")
    write_parquet(truth, TRUTH_SCHEMA, out / "truth.parquet")
    write_jsonl(train, out / "labeled" / "kuake_qtr_train.jsonl")
    write_jsonl(dev, out / "labeled" / "kuake_qtr_dev.jsonl")
    print_facts(videos, ads, pairs, truth, {"train": train, "dev": dev}, out)


def print_facts(videos, ads, pairs, truth, labeled, out: Path) -> None:
    """The facts SOURCE.md quotes."""
    print(f"videos: {len(videos)} by dt {dict(Counter(v['dt'] for v in videos))}; "
          f"with frames {sum(bool(v['frames']) for v in videos)}")
    print(f"ads: {len(ads)}; industries {dict(Counter(a['industry'] for a in ads).most_common())}")
    print(f"  advertisers: {len({a['advertiser'] for a in ads})}")
    for dt in PAIR_DATES:
        day, known = [p for p in pairs if p["dt"] == dt], [t for t in truth if t["dt"] == dt]
        queries, day_ads = len({p["query"] for p in day}), len({p["ad_id"] for p in day})
        irrelevant = sum(t["label"] <= 1 for t in known)
        print(f"pairs {dt}: {len(day)} rows ({len(day) - len(known)} bad), {queries} queries, {day_ads} ads, "
              f"{sum(p['impressions'] for p in day)} impressions; true irrelevant {irrelevant}/{len(known)} = "
              f"{irrelevant / len(known):.4f}; sources {dict(Counter(t['source'] for t in known))}")
    for name, rows in labeled.items():
        labels = Counter(r["label"] for r in rows)
        queries = len({r["query"] for r in rows})
        print(f"kuake {name}: {len(rows)} rows, {queries} queries, labels {sorted(labels.items())}")
    for f in sorted(out.rglob("*")):
        if f.is_file():
            print(f"  {f.relative_to(out)}: {f.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
