"""A training corpus streamed shard by shard, so that no row of it passes through the driver or sits whole in memory.

A shard is one row group of one Parquet file, or one JSON-lines file. Each epoch has its own seeded shard
order; rank r of W takes every W-th shard of it, and DataLoader worker w of n every n-th shard of its rank's.
A worker's rows pass through a bounded, seeded shuffle buffer, and it collates (decodes frames, tokenises,
masks) whole batches, so that work runs in the worker processes, ahead of the step.

The order of every row is computed from the shards' row counts alone (`buffer_order`), before anything is
read. So the position (epoch, batches done) is the whole resume state: a resumed run re-derives the order,
skips what it did without reading it, and reads only the shards whose rows are still to come. Each batch's
own random numbers (masking) come from a generator seeded by (seed, epoch, rank, batch), not from a shared
one, so they are the same however the run was cut.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from hcmrm.errors import InputDataError
from hcmrm.train.distributed import DistInfo
from hcmrm.train.loop import BatchSource, IndexedBatches

JSON_SUFFIXES = (".json", ".jsonl")
PARQUET_SUFFIXES = (".parquet", ".pq")


class ShardReadError(InputDataError):
    """A shard could not be read or one of its rows could not be collated; the message names both."""


@dataclass(frozen=True)
class Shard:
    path: str  # a Parquet or JSON-lines file
    row_group: int  # the Parquet row group; -1 for a JSON-lines file (read whole)
    rows: int  # rows read from it: the Parquet footer's or the line count (fewer = its first rows)

    def __str__(self) -> str:
        return self.path if self.row_group < 0 else f"{self.path} row group {self.row_group}"


# --- what there is to read ----------------------------------------------------------------------


def list_shards(paths: Sequence[str | Path]) -> list[Shard]:
    """The shards of these files and folders (folders: their Parquet / JSON-lines files, sorted), in a fixed
    order. Files may be URIs (file:, s3://, hdfs:// ...: what pyarrow's file systems open), as Delta lists them."""
    import pyarrow.parquet as pq

    shards = []
    for path in _files(paths):
        if path.endswith(JSON_SUFFIXES):
            with _open(path) as f:
                shards.append(Shard(path, -1, sum(1 for line in f if line.strip())))
            continue
        try:
            meta = pq.ParquetFile(_open(path)).metadata
        except Exception as error:  # pyarrow raises several types for a file that is not Parquet
            raise ShardReadError(f"{path}: not a readable Parquet file ({error})") from error
        shards += [Shard(path, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
    return [s for s in shards if s.rows]


def _open(path: str):
    """A binary file object for a local path, a file: URI or another pyarrow file-system URI."""
    if path.startswith("file:"):
        from urllib.parse import unquote, urlparse

        path = unquote(urlparse(path).path)
    if "://" not in path:
        return open(path, "rb")
    from pyarrow import fs

    filesystem, inner = fs.FileSystem.from_uri(path)
    return filesystem.open_input_file(inner)


def _files(paths: Sequence[str | Path]) -> list[str]:
    files = []
    for given in map(str, paths):
        path = Path(given)
        if "://" in given or given.startswith("file:"):
            files.append(given)  # a URI from a table's file list: listed already
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in PARQUET_SUFFIXES + JSON_SUFFIXES
                           and not any(part.startswith(("_", ".")) for part in p.relative_to(path).parts))
            files += map(str, found)
        elif path.exists():
            files.append(given)
        else:
            raise ShardReadError(f"{path}: no such file or folder")
    if not files:
        raise ShardReadError(f"no Parquet or JSON-lines files in {', '.join(map(str, paths))}")
    return files


# --- who reads what, in which order -------------------------------------------------------------


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def worker_shards(shards: Sequence[Shard], seed: int, epoch: int, rank: int, world: int,
                  worker: int, workers: int) -> list[Shard]:
    """The shards that worker `worker` of rank `rank` reads in `epoch`: disjoint across ranks and workers."""
    order = _rng(seed, epoch).permutation(len(shards))
    mine = order[rank::world][worker::workers]
    return [shards[i] for i in mine]


def buffer_order(counts: Sequence[int], buffer: int, rng: np.random.Generator) -> np.ndarray:
    """(shard, row) of each row in the order a shuffle buffer of `buffer` rows emits them, shards read in turn.

    While the buffer is full, each incoming row replaces a uniformly drawn one, which is emitted; at the end
    the rest leaves in random order. Computed on indices only, so nothing needs to be read to know it.
    """
    total = int(sum(counts))
    incoming = np.repeat(np.arange(len(counts)), counts)
    rows = np.concatenate([np.arange(c) for c in counts]) if counts else np.zeros(0, dtype=np.int64)
    ids = np.stack([incoming, rows], axis=1)
    size = max(1, min(buffer, total))
    slots = list(range(size))  # the buffer, as positions into `ids`
    draws = rng.integers(0, size, total - size) if total > size else []
    out = np.empty(total, dtype=np.int64)
    for i, j in enumerate(draws):
        out[i] = slots[j]
        slots[j] = size + i
    out[len(draws):] = np.asarray(slots)[rng.permutation(len(slots))] if total else []
    return ids[out]


def round_robin(batches: Sequence[int]) -> list[int]:
    """Which worker yields each batch of a DataLoader over workers with these batch counts (in order, as
    torch's DataLoader serves an IterableDataset: a round over the workers that still have batches)."""
    order, left = [], list(batches)
    while any(left):
        for worker, n in enumerate(left):
            if n:
                order.append(worker)
                left[worker] -= 1
    return order


@dataclass(frozen=True)
class StreamPlan:
    """The epoch's reading plan of one rank, from row counts alone; every rank derives every rank's."""

    shards: tuple[Shard, ...]
    seed: int
    rank: int
    world: int
    workers: int  # DataLoader worker processes (0 = read in the training process)
    batch_size: int  # rows per batch on this rank (the global batch over the world size)
    buffer: int  # shuffle-buffer rows per worker

    def worker_shards(self, epoch: int, worker: int, rank: int | None = None) -> list[Shard]:
        rank = self.rank if rank is None else rank
        return worker_shards(self.shards, self.seed, epoch, rank, self.world, worker, max(1, self.workers))

    def worker_batches(self, epoch: int, rank: int | None = None) -> list[int]:
        """Full batches each worker of `rank` can form in `epoch` (a worker's last partial batch is dropped)."""
        return [sum(s.rows for s in self.worker_shards(epoch, w, rank)) // self.batch_size
                for w in range(max(1, self.workers))]

    def batches_per_epoch(self, epoch: int) -> int:
        """Steps of `epoch`: what the rank with the fewest batches can do, so every rank steps together."""
        steps = min(sum(self.worker_batches(epoch, r)) for r in range(self.world))
        if steps == 0:
            rows = sum(s.rows for s in self.shards)
            raise ValueError(f"{len(self.shards)} shards of {rows} rows give some of the {self.world} rank(s) x "
                             f"{max(1, self.workers)} worker(s) no batch of {self.batch_size}: write the corpus in "
                             "more files or row groups, or use fewer processes or loader workers")
        return steps

    def worker_order(self, epoch: int, worker: int) -> np.ndarray:
        """(shard index into worker_shards, row) of each row worker `worker` emits in `epoch`."""
        counts = [s.rows for s in self.worker_shards(epoch, worker)]
        return buffer_order(counts, self.buffer, _rng(self.seed, epoch, self.rank, worker, 1))


# --- reading ------------------------------------------------------------------------------------


def read_shard(shard: Shard, columns: Sequence[str]) -> list[dict]:
    """The shard's rows as dicts of the given columns (a missing column reads as None)."""
    try:
        if shard.row_group < 0:
            with _open(shard.path) as f:
                records = [json.loads(line) for line in f if line.strip()]
            return [{c: r.get(c) for c in columns} for r in records[: shard.rows]]
        import pyarrow.parquet as pq

        file = pq.ParquetFile(_open(shard.path))
        present = [c for c in columns if c in file.schema_arrow.names]
        table = file.read_row_group(shard.row_group, columns=present)
        return [{c: r.get(c) for c in columns} for r in table.slice(0, shard.rows).to_pylist()]
    except Exception as error:
        raise ShardReadError(f"{shard}: cannot read it ({type(error).__name__}: {error})") from error


def batch_generator(seed: int, epoch: int, rank: int, batch: int) -> torch.Generator:
    """The random numbers of one batch's collation (masking), the same whenever it is built."""
    return torch.Generator().manual_seed(int(_rng(seed, epoch, rank, batch, 2).integers(2**62)))


@dataclass
class Failure:
    """What a worker yields instead of a batch it could not build: the main process raises it as one line."""

    message: str


class ShardStream(IterableDataset):
    """One rank's batches of one epoch, from its `skip`-th on: (global batch index, collated batch) pairs.

    `collate(rows, generator)` turns a list of row dicts into a batch; it runs in the worker processes.
    """

    def __init__(self, plan: StreamPlan, epoch: int, columns: Sequence[str],
                 collate: Callable[[list[dict], torch.Generator], object], skip: int = 0):
        super().__init__()
        self.plan, self.epoch, self.columns, self.collate, self.skip = plan, epoch, list(columns), collate, skip

    def __iter__(self) -> Iterator[tuple[int, object]]:
        plan, size = self.plan, self.plan.batch_size
        counts = plan.worker_batches(self.epoch)
        turns = round_robin(counts)
        worker = self._role(turns, len(counts))
        mine = [g for g, w in enumerate(turns) if w == worker]
        done = sum(1 for g in mine if g < self.skip)
        shards = plan.worker_shards(self.epoch, worker)
        order = plan.worker_order(self.epoch, worker)[: counts[worker] * size]
        reader = _RowReader(shards, order, self.columns)
        for local, g in enumerate(mine[done:], start=done):
            try:
                rows, where = reader.rows(local * size, (local + 1) * size)
            except ShardReadError as error:
                yield g, Failure(str(error))
                return
            yield g, self._collate(rows, where, g)

    def _role(self, turns: list[int], workers: int) -> int:
        """Which worker of the epoch's plan this process plays. A resumed loader starts its round at its first
        process, so the roles turn until that one is the worker whose turn it was: the cycle then goes on as before."""
        info = get_worker_info()
        process = info.id if info is not None else 0
        return (process + turns[self.skip]) % workers if self.skip < len(turns) else process

    def _collate(self, rows: list[dict], where: list[str], g: int):
        generator = batch_generator(self.plan.seed, self.epoch, self.plan.rank, g)
        try:
            return self.collate(rows, generator)
        except Exception as error:  # find the row: collate each alone, in order
            for row, name in zip(rows, where):
                try:
                    self.collate([row], batch_generator(0, 0, 0, 0))
                except Exception as row_error:
                    return Failure(f"{name}: {type(row_error).__name__}: {row_error}")
            return Failure(f"batch {g} ({where[0]} ...): {type(error).__name__}: {error}")


class _RowReader:
    """Rows of one worker by their position in its emit order; a shard is read when its first row is due
    and dropped after its last, so at most the buffer's worth of shards is held."""

    def __init__(self, shards: list[Shard], order: np.ndarray, columns: list[str]):
        self.shards, self.order, self.columns = shards, order, columns
        self.last = {int(s): i for i, s in enumerate(order[:, 0])}  # position of each shard's last row
        self.loaded: dict[int, list[dict]] = {}

    def rows(self, begin: int, end: int) -> tuple[list[dict], list[str]]:
        rows, where = [], []
        for position in range(begin, end):
            shard, row = (int(v) for v in self.order[position])
            if shard not in self.loaded:
                self.loaded[shard] = read_shard(self.shards[shard], self.columns)
            rows.append(self.loaded[shard][row])
            where.append(f"{self.shards[shard]}, row {row}")
            if self.last[shard] == position:
                del self.loaded[shard]
        return rows, where


def epoch_batches(plan: StreamPlan, epoch: int, columns: Sequence[str],
                  collate: Callable[[list[dict], torch.Generator], object], skip: int = 0,
                  pin_memory: bool = False, prefetch: int = 2, start_method: str = "fork") -> Iterator[object]:
    """The rank's batches of `epoch` from batch `skip` to the epoch's end (the step count all ranks share).

    With start_method "forkserver", `collate` must pickle (a module-level class, not a closure)."""
    import multiprocessing

    stop = plan.batches_per_epoch(epoch)
    if skip >= stop:
        return
    loader = DataLoader(ShardStream(plan, epoch, columns, collate, skip), batch_size=None,
                        num_workers=plan.workers, pin_memory=pin_memory,
                        prefetch_factor=prefetch if plan.workers else None,
                        multiprocessing_context=multiprocessing.get_context(start_method) if plan.workers else None)
    expected = iter(range(skip, stop))
    for g, batch in loader:
        if isinstance(batch, Failure):
            raise ShardReadError(batch.message)
        if g != next(expected):  # torch's DataLoader changed how it interleaves workers
            raise RuntimeError(f"batch {g} arrived out of order: the resume plan no longer matches the DataLoader")
        yield batch
        if g + 1 >= stop:
            return


# --- as the training loop's batch source --------------------------------------------------------


@dataclass
class StreamConfig:
    workers: int = 2  # DataLoader worker processes reading, decoding, tokenising, masking (0 = in the trainer)
    shuffle_buffer: int = 10_000  # rows each worker shuffles among
    prefetch: int = 2  # batches each worker builds ahead of the step
    # how loader workers start: "fork", or "forkserver" where this process holds connections a forked child
    # must not share (a live Spark gateway: py4j's finalizers in the child would shut the parent's sockets)
    start_method: str = "fork"


class ShardBatches:
    """`hcmrm.train.loop.BatchSource` over shards: this process's part of every global batch, streamed."""

    def __init__(self, shards: Sequence[Shard], columns: Sequence[str],
                 collate: Callable[[list[dict], torch.Generator], object], stream: StreamConfig,
                 batch_size: int, seed: int, rank: int = 0, world: int = 1, pin_memory: bool = False):
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} must divide over {world} processes")
        workers = min(stream.workers, len(shards) // world)  # a worker without a shard would idle
        self.plan = StreamPlan(tuple(shards), seed, rank, world, workers, batch_size // world, stream.shuffle_buffer)
        self.columns, self.collate, self.stream, self.pin_memory = list(columns), collate, stream, pin_memory
        listing = "\n".join(f"{s.path}\t{s.row_group}\t{s.rows}" for s in shards)
        self.identity = {"shards": hashlib.sha256(listing.encode()).hexdigest(), "rows": sum(s.rows for s in shards)}

    def batches_per_epoch(self, epoch: int) -> int:
        return self.plan.batches_per_epoch(epoch)

    def batches(self, epoch: int, start: int, generator: torch.Generator) -> Iterator[object]:
        return epoch_batches(self.plan, epoch, self.columns, self.collate, start, self.pin_memory, self.stream.prefetch,
                             self.stream.start_method)


def batch_source(data: Sequence, columns: Sequence[str], collate_rows: Callable[[list[dict], torch.Generator], object],
                 collate_examples: Callable[[list, torch.Generator], object], stream: StreamConfig, batch_size: int,
                 seed: int, dist: DistInfo, pin_memory: bool = False) -> BatchSource:
    """A run's batches from examples in memory (IndexedBatches, collate_examples) or from shards streamed
    through loader workers (ShardBatches, collate_rows: a picklable callable, for the workers)."""
    if data and isinstance(data[0], Shard):
        return ShardBatches(data, columns, collate_rows, stream, batch_size, seed, dist.rank, dist.world_size,
                            pin_memory)

    def make_batch(indices, generator):
        return collate_examples([data[i] for i in indices], generator)

    return IndexedBatches(len(data), make_batch, batch_size, seed, dist)


def first_rows(shards: Sequence[Shard], limit: int) -> list[Shard]:
    """The shards that hold the corpus's first `limit` rows, the last one cut short (a quick run)."""
    kept, left = [], limit
    for shard in shards:
        if left <= 0:
            break
        kept.append(dataclasses.replace(shard, rows=min(shard.rows, left)))
        left -= shard.rows
    return kept
