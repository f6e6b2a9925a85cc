"""Streaming a corpus shard by shard: disjoint ranks and workers, every row once per epoch, exact resume,
bounded shuffling, and a bad row named in one line."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from hcmrm.train.shards import (
    ShardReadError,
    StreamPlan,
    buffer_order,
    epoch_batches,
    list_shards,
    round_robin,
)


def write_corpus(folder, files=4, groups=3, rows=8):
    """`files` Parquet files of `groups` row groups of `rows` rows; row ids 0..N-1 in column `id`."""
    folder.mkdir(exist_ok=True)
    next_id = 0
    for f in range(files):
        with pq.ParquetWriter(folder / f"part-{f}.parquet", pa.schema([("id", pa.int64()), ("text", pa.string())])) as w:
            for _ in range(groups):
                ids = list(range(next_id, next_id + rows))
                w.write_table(pa.table({"id": ids, "text": [f"row {i}" for i in ids]}))
                next_id += rows
    return folder


def ids_and_noise(rows, generator):
    """A collate that keeps the row ids and draws one random number, as masking would."""
    return {"ids": [r["id"] for r in rows], "noise": torch.rand(1, generator=generator).item()}


def plan_for(folder, rank=0, world=1, workers=0, batch_size=4, buffer=16, seed=0):
    return StreamPlan(tuple(list_shards([folder])), seed, rank, world, workers, batch_size, buffer)


def run_epoch(plan, epoch=0, skip=0):
    return list(epoch_batches(plan, epoch, ["id"], ids_and_noise, skip=skip))


def test_list_shards_reads_row_groups_from_footers_and_counts_json_lines(tmp_path):
    write_corpus(tmp_path / "corpus", files=2, groups=3, rows=5)
    (tmp_path / "corpus" / "more.jsonl").write_text("".join(json.dumps({"id": 100 + i}) + "\n" for i in range(7)))
    shards = list_shards([tmp_path / "corpus"])
    assert [(s.row_group, s.rows) for s in shards] == [(-1, 7)] + [(g, 5) for g in range(3)] * 2
    assert "part-1.parquet row group 2" in str(shards[-1])


def test_a_file_that_is_not_parquet_is_named(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ShardReadError, match="bad.parquet: not a readable Parquet file"):
        list_shards([tmp_path / "bad.parquet"])


def test_buffer_order_is_a_permutation_that_never_runs_ahead_of_the_buffer():
    counts, buffer = [5, 0, 9, 3, 7], 6
    order = buffer_order(counts, buffer, np.random.default_rng(1))
    read_position = {(s, r): i for i, (s, r) in enumerate((s, r) for s, c in enumerate(counts) for r in range(c))}
    positions = [read_position[(int(s), int(r))] for s, r in order]
    assert sorted(positions) == list(range(sum(counts)))
    assert all(read <= emitted + buffer - 1 for emitted, read in enumerate(positions))
    assert positions != sorted(positions)  # it does shuffle


def test_every_row_is_seen_once_per_epoch_and_ranks_and_workers_read_disjoint_shards(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", files=4, groups=4, rows=6)  # 16 shards, 96 rows
    seen = {}
    for rank in range(2):
        for batch in run_epoch(plan_for(corpus, rank=rank, world=2, workers=2, batch_size=3)):
            for row in batch["ids"]:
                seen.setdefault(row, []).append(rank)
    assert sorted(seen) == list(range(96))
    assert all(len(ranks) == 1 for ranks in seen.values())
    plan = plan_for(corpus, world=2, workers=2)
    read = [s for r in range(2) for w in range(2) for s in plan.worker_shards(0, w, rank=r)]
    assert len(set(read)) == len(read) == 16


def test_each_epoch_has_its_own_order_and_a_seed_fixes_it(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    plan = plan_for(corpus, workers=2)
    first, again, second = run_epoch(plan, 0), run_epoch(plan, 0), run_epoch(plan, 1)
    assert first == again
    assert [b["ids"] for b in first] != [b["ids"] for b in second]
    assert sorted(i for b in first for i in b["ids"]) == sorted(i for b in second for i in b["ids"])


def test_a_resumed_epoch_continues_with_the_batches_it_would_have_seen(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", files=3, groups=3, rows=7)  # uneven: workers differ in batches
    plan = plan_for(corpus, workers=2, batch_size=4, buffer=10)
    whole = run_epoch(plan)
    assert len(set(plan.worker_batches(0))) == 2  # the case round_robin has to get right
    for skip in (1, 5, len(whole) - 1):
        assert run_epoch(plan, skip=skip) == whole[skip:]


def test_all_ranks_take_as_many_steps_as_the_shortest(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", files=1, groups=5, rows=8)  # 5 shards over 2 ranks: 3 and 2
    lengths = [len(run_epoch(plan_for(corpus, rank=r, world=2, batch_size=4))) for r in range(2)]
    assert lengths == [4, 4]


def test_round_robin_serves_the_workers_that_still_have_batches():
    assert round_robin([3, 1, 2]) == [0, 1, 2, 0, 2, 0]


def test_too_few_shards_for_the_processes_is_one_clear_error(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", files=1, groups=1, rows=8)
    with pytest.raises(ValueError, match="more files or row groups"):
        run_epoch(plan_for(corpus, world=2))


def test_a_row_that_fails_in_a_loader_worker_reaches_the_user_as_one_line_naming_shard_and_row(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", files=2, groups=2, rows=4)

    def collate(rows, generator):
        if any(r["id"] == 13 for r in rows):
            raise ValueError("cannot decode frame 0")
        return [r["id"] for r in rows]

    with pytest.raises(ShardReadError) as failure:
        list(epoch_batches(plan_for(corpus, workers=2, batch_size=2), 0, ["id"], collate))
    message = str(failure.value)
    assert "\n" not in message
    assert "part-1.parquet row group 1, row 1: ValueError: cannot decode frame 0" in message  # id 13 = file 1, group 1, row 1


def test_workers_started_from_a_fork_server_give_the_batches_forked_ones_give(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", files=2, groups=2, rows=6)
    plan = plan_for(corpus, workers=2, batch_size=3)
    forked = list(epoch_batches(plan, 0, ["id"], ids_and_noise))
    served = list(epoch_batches(plan, 0, ["id"], ids_and_noise, start_method="forkserver"))
    assert served == forked and len(forked) == 8
