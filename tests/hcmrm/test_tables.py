"""The table contracts: names, keys, partitions, and the reject reasons each job writes."""

import pickle

import pyarrow as pa
import pytest

from hcmrm import tables
from hcmrm.labels import GRADE_NAMES
from hcmrm.tables import (
    AUDIT_REJECTS, BAD_FRAMES, DUPLICATE_AD, PRETRAIN_REJECTS, RELEVANCE_SCORES, SCORING_REJECTS, TABLES, UNDECODABLE_FRAMES,
    VIDEOS, RejectReason, Table,
)

# The reason texts as the jobs wrote them before they had one home (plus no_video_text, added with the
# video_texts table): rejects tables written then stay comparable.
REASONS_BEFORE = {
    "pretrain_rejects": ["missing_video_id", "duplicate_video_id", "no_text", "no_keywords", "bad_frames: %s"],
    "scoring_rejects": [
        "null_ad_id", "null_query", "empty_query", "unknown_ad: ad_id not in ads",
        "duplicate_ad: ad_id appears %d times in ads", "no_video: the ad has no video_id",
        "unknown_video: the ad's video_id is not in videos",
        "duplicate_video: the ad's video_id appears more than once in videos",
        "no_video_text: video_texts has no text for the ad's video",
        "duplicate_pair: (dt, query, ad_id) repeated in the input",
        "empty_text: the ad's video has no title, OCR or ASR text to score against", "undecodable_frames: %s",
        "oversized_frame: %s",
    ],
}


def test_tables_are_found_by_name_and_partitioned_by_dt_or_not_at_all():
    assert all(name == table.name for name, table in TABLES.items()) and len(TABLES) == 16
    partitioned = sorted(name for name, table in TABLES.items() if table.partition)
    assert partitioned == ["audit_labels", "irrelevant_rate_daily", "pretrain_pairs", "pretrain_rejects", "query_ad_pairs",
                           "relevance_scores", "scoring_rejects", "video_texts", "videos"]
    assert {table.partition for table in TABLES.values()} == {"dt", None}
    assert all(table.schema.field("dt").type == pa.string() for table in TABLES.values() if table.partition)


def test_a_contract_naming_a_column_it_lacks_is_refused():
    with pytest.raises(ValueError, match=r"table t: \['id'\] are not columns of its schema"):
        Table("t", pa.schema([("dt", pa.string())]), key=("id",), partition="dt")


def test_readers_may_count_on_every_column_but_the_optional_ones():
    assert VIDEOS.required == ("video_id", "title", "frames", "dt")  # OCR and ASR text may be absent
    assert RELEVANCE_SCORES.key == ("dt", "query", "ad_id")


def test_scores_hold_one_probability_per_grade_then_score_and_label():
    names = RELEVANCE_SCORES.columns
    start = names.index("p_bad")
    assert names[start : start + len(GRADE_NAMES) + 2] == (*(f"p_{g}" for g in GRADE_NAMES), "score", "label")
    assert RELEVANCE_SCORES.schema.field("label").type == pa.int32()


@pytest.mark.parametrize("table", [PRETRAIN_REJECTS, SCORING_REJECTS, AUDIT_REJECTS], ids=lambda t: t.name)
def test_each_rejects_table_lists_its_reasons_as_written_before(table):
    assert list(table.reasons) == REASONS_BEFORE.get(table.name, list(table.reasons))  # audit_rejects: new
    codes = [reason.code for reason in table.reasons]
    assert len(set(codes)) == len(codes) and all(code.isidentifier() and code.islower() for code in codes)
    assert all(reason.explanation for reason in table.reasons)
    assert "reason" in table.columns


def test_every_reason_constant_belongs_to_a_rejects_table():
    defined = {value for value in vars(tables).values() if isinstance(value, RejectReason)}
    assert defined == set(PRETRAIN_REJECTS.reasons) | set(SCORING_REJECTS.reasons) | set(AUDIT_REJECTS.reasons)


def test_a_reason_template_is_filled_per_row_and_keeps_its_code():
    assert BAD_FRAMES.detail("frame 1: cannot identify image") == "bad_frames: frame 1: cannot identify image"
    assert DUPLICATE_AD.detail(3) == "duplicate_ad: ad_id appears 3 times in ads"
    assert UNDECODABLE_FRAMES.code == "undecodable_frames" and type(BAD_FRAMES.detail("x")) is str


def test_a_reason_travels_to_spark_workers_whole():
    copy = pickle.loads(pickle.dumps(DUPLICATE_AD))
    assert copy == DUPLICATE_AD and copy.explanation == DUPLICATE_AD.explanation and copy.code == "duplicate_ad"
