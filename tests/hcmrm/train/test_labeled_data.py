"""Reading labeled pairs from every shipped format; bad rows are quarantined with a reason."""

import json

import pandas as pd
import pytest

from hcmrm.errors import InputDataError
from hcmrm.train.labeled_data import read_labeled, read_records

ROWS = [
    {"id": "1", "query": "感冒吃什么药", "title": "感冒了吃什么药好得快", "label": "3"},
    {"id": "2", "query": "感冒吃什么药", "title": "发烧怎么办", "label": "0"},
    {"id": "3", "query": "头疼", "title": "头疼怎么缓解", "label": 2},
]


def test_json_array_json_lines_and_parquet_read_the_same(tmp_path):
    array = tmp_path / "a.json"
    array.write_text(json.dumps(ROWS, ensure_ascii=False), encoding="utf-8")
    lines = tmp_path / "b.json"
    lines.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS) + "\n", encoding="utf-8")
    parquet = tmp_path / "c.parquet"
    pd.DataFrame(ROWS).astype({"label": str}).to_parquet(parquet)
    frames = [read_labeled(p).pairs[["query", "title", "label"]] for p in (array, lines, parquet)]
    for frame in frames:
        assert frame["label"].tolist() == [3, 0, 2]
        pd.testing.assert_frame_equal(frame, frames[0])


def test_relevant_column_of_qbqtc_v0_is_the_label(tmp_path):
    path = tmp_path / "v0.json"
    path.write_text(json.dumps({"query": "q", "title": "t", "relevant": "1"}) + "\n")
    assert read_labeled(path).pairs["label"].tolist() == [1]


def test_bad_rows_are_quarantined_with_a_reason():
    from hcmrm.train.labeled_data import normalize

    raw = pd.DataFrame(
        {
            "query": ["ok", "", "q", "q", "q", "q"],
            "title": ["t", "t", None, "t", "t", "t"],
            "label": ["1", "2", "2", "x", 7, 1.5],
        }
    )
    result = normalize(raw)
    assert result.pairs["query"].tolist() == ["ok"]
    assert result.rejects["reason"].tolist() == [
        "empty query",
        "empty title",
        "label 'x' is not an integer",
        "label 7 outside 0..3",
        "label 1.5 is not an integer",
    ]


def test_clear_errors_for_missing_columns_and_unknown_formats(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps([{"query": "q", "title": "t"}]))
    with pytest.raises(ValueError, match="missing column"):
        read_labeled(path)
    csv = tmp_path / "x.csv"
    csv.write_text("query,title,label\nq,t,1\n")
    with pytest.raises(ValueError, match="expected a JSON array"):
        read_records(csv)
    with pytest.raises(FileNotFoundError):
        read_records(tmp_path / "missing.json")


def test_split_column_filters_and_a_split_that_keeps_nothing_is_named(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps([dict(r, split="dev" if i else "train") for i, r in enumerate(ROWS)], ensure_ascii=False))
    assert len(read_labeled(path, split="dev")) == 2
    with pytest.raises(InputDataError, match=r"no rows of split 'test' .*the file's splits are \['dev', 'train'\]"):
        read_labeled(path, split="test")


@pytest.mark.parametrize("text, said", [("", "is empty: no labeled rows"), ("[{\"query\": ", "not valid JSON"),
                                        ("{\"query\": 1}\n{oops", ":2: not a JSON line")])
def test_an_empty_or_broken_json_file_is_an_input_data_error(tmp_path, text, said):
    path = tmp_path / "dev.json"
    path.write_text(text)
    with pytest.raises(InputDataError, match=said) as error:
        read_records(path)
    assert error.value.exit_code == 3 and "check the file given as --data" in error.value.line()


def test_texts_are_built_once_per_row_unless_given_and_only_ocr_asr_needs_an_idf():
    from hcmrm.text.video_text import TextSettings, build_video_text
    from hcmrm.train.labeled_data import build_texts, needs_idf, normalize

    pairs = normalize(pd.DataFrame({"query": ["q", "q"], "title": ["原神纳塔交响音乐现场", "头疼怎么缓解"],
                                    "label": [1, 2]})).pairs
    assert not needs_idf(pairs)  # a title alone is the whole text
    short = TextSettings(max_chars=4)
    assert build_texts(pairs, settings=short)["text"].tolist() == ["原神纳塔", "头疼怎么"]
    with_ocr = pairs.assign(ocr_text=["伦敦交响乐团演奏", None], text=[None, "给定的文本"])
    assert needs_idf(with_ocr) and not needs_idf(with_ocr.iloc[1:])  # the second row's text is given
    built = build_texts(with_ocr)["text"].tolist()
    assert built == [build_video_text("原神纳塔交响音乐现场", "伦敦交响乐团演奏", None), "给定的文本"]


QBQTC_MAP = {"qbqtc": {0: 0, 1: 1, 2: 3}}  # QBQTC's 0..2 onto the model's 0..3: "very relevant" is Excellent


def test_sources_on_other_scales_train_as_one_set_through_their_label_maps(tmp_path):
    from hcmrm.train.labeled_data import read_sources

    kuake = tmp_path / "kuake.json"
    kuake.write_text(json.dumps(ROWS, ensure_ascii=False), encoding="utf-8")
    v0 = tmp_path / "v0.json"
    v0.write_text("\n".join(json.dumps({"query": "三江", "title": f"三江{r}", "relevant": str(r)}, ensure_ascii=False)
                            for r in (2, 1, 0, 3)) + "\n", encoding="utf-8")
    both = read_sources([str(kuake), f"qbqtc={v0}"], QBQTC_MAP)
    assert both.pairs["label"].tolist() == [3, 0, 2, 3, 1, 0]  # KUAKE as is, then QBQTC 2, 1, 0 mapped
    assert both.rejects["reason"].tolist() == ["label 3 not in the source's label map [0, 1, 2]"]
    # Without its map the same file reads QBQTC's "very relevant" as Good: the scale is the source's to say.
    assert read_sources([str(v0)], QBQTC_MAP).pairs["label"].tolist() == [2, 1, 0, 3]


def test_a_source_names_a_known_map_or_is_a_path(tmp_path):
    from hcmrm.train.labeled_data import check_label_map, parse_source

    partition = tmp_path / "dt=2024-05-01"
    partition.mkdir()
    assert parse_source(str(partition), QBQTC_MAP) == (str(partition), None)  # `=` inside a path is a path
    assert parse_source("qbqtc=v0.json", QBQTC_MAP) == ("v0.json", {0: 0, 1: 1, 2: 3})
    with pytest.raises(ValueError, match="'qbqtcv1' is not a label map of the training YAML"):
        parse_source("qbqtcv1=v0.json", QBQTC_MAP)
    with pytest.raises(ValueError, match="no path after"):
        parse_source("qbqtc=", QBQTC_MAP)
    assert check_label_map("m", {"0": "0", "1": 2}) == {0: 0, 1: 2}  # YAML or JSON keys may be strings
    with pytest.raises(ValueError, match=r"label map 'm': 1 -> 4: label 4 outside 0..3"):
        check_label_map("m", {0: 0, 1: 4})
    with pytest.raises(ValueError, match="non-empty mapping"):
        check_label_map("m", {})


def test_staged_rows_keep_every_row_accepted_with_its_text_or_rejected_with_its_reason_and_raw_label():
    from hcmrm.train.labeled_data import STAGED_COLUMNS, labeled_example, staged_rows

    raw = pd.DataFrame({"query": ["耳机", "", "茶叶"], "title": ["蓝牙耳机", "空查询", "龙井"], "relevant": ["2", "1", "7"],
                        "frames": [[b"jpeg"], None, None]})
    rows = staged_rows(raw, "v0.json", label_map={0: 0, 1: 1, 2: 3})
    assert list(rows.columns) == list(STAGED_COLUMNS) and len(rows) == 3
    accepted = rows[rows["reason"].isna()].to_dict("records")
    assert [(r["query"], r["label"], r["frames"]) for r in accepted] == [("耳机", 3, [b"jpeg"])]
    example = labeled_example(accepted[0])
    assert (example.text, example.label, example.frames) == (accepted[0]["text"], 3, [b"jpeg"]) and example.text
    rejected = rows[rows["reason"].notna()]
    assert rejected["raw_label"].tolist() == ["1", "7"] and rejected["label"].isna().all()
    assert rejected["reason"].tolist()[0] == "empty query"
