"""The embedded engine: Qdrant Edge in-process, one shard per collection under DIR/<collection>."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from alexandria.errors import RunFailure, UsageError
from alexandria.store.base import (
    CollectionMissing,
    Hit,
    PointBlock,
    PointData,
    StoreBusy,
    StoreError,
    VectorStore,
    plain_vector,
    short_error,
)
from alexandria.store.config import (
    DEFAULT,
    KEYWORD_INDEXES,
    StoreConfig,
    check_same,
    index_threads,
    read_config,
    segment_target,
    write_config,
)
from alexandria.store.sparse import (
    RRF_K,
    SPARSE,
    check_mode,
    no_sparse,
    prefetch_limit,
    term_weights,
    wants_sparse,
)

log = logging.getLogger("alexandria")
T = TypeVar("T")
BUILD_NICE = 10  # an index built while a run goes on, like the run's book workers


class EdgeStore(VectorStore):
    """Qdrant Edge: the real engine in-process, one shard per collection under DIR/<collection>."""

    def __init__(self, root: Path, collection: str, dimension: int | None,
                 config: dict[str, Any] | None = None) -> None:
        """config: the StoreConfig fields a user asked for (None or absent: not asked). A new
        shard is created with DEFAULT and them; an existing one keeps its own and refuses others."""
        import qdrant_edge as qe

        self.qe = qe
        self.collection = collection
        self.path = Path(root).expanduser() / collection
        existing = self.path / "edge_config.json"
        _check_free(self.path)
        _finish_swap(self.path)
        try:
            if existing.is_file():
                stored = edge_dimension(existing)
                if dimension is not None and stored is not None and stored != dimension:
                    raise UsageError(
                        f"Collection {collection!r} in {self.path.parent} holds {stored}-dimensional "
                        f"vectors but the model makes {dimension}; use another --collection."
                    )
                self.sparse = SPARSE in edge_vectors(existing)["sparse"]
                # What the shard holds, whatever its record says (a record may predate sparse).
                self.config = replace(read_config(self.path), sparse=self.sparse)
                check_same(self.path, self.config, config or {})
                self.shard = _load_shard(qe, self.path,
                                         _reopen_config(qe, self.path, self.config, stored))
            elif dimension is None:
                raise CollectionMissing(collection, f"in {self.path.parent}")
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                self.config = DEFAULT.with_options(**(config or {}))
                write_config(self.path, self.config)
                self.shard = _create_shard(qe, self.path, dimension, self.config)
                self.sparse = self.config.sparse
            _drop_leftovers(self.path)
        except UsageError:
            raise
        except PermissionError as e:
            raise UsageError(f"The store folder {self.path} is not writable ({e.strerror}).") from e
        except Exception as e:  # Edge raises plain Exception
            if "WouldBlock" in str(e):
                raise StoreBusy(
                    f"The store {self.path} is open in another process; wait for it to finish."
                ) from e
            raise UsageError(f"The store {self.path} could not be opened ({e}).") from e

    def _book_filter(self, book_key: str):
        qe = self.qe
        return qe.Filter(must=[qe.FieldCondition(key="book_key", match=qe.MatchValue(book_key))])

    def _filter(self, must: dict[str, Any] | None, must_not: dict[str, Any] | None = None):
        if not must and not must_not:
            return None
        qe = self.qe

        def conds(spec: dict[str, Any] | None) -> list | None:
            out = []
            for key, value in (spec or {}).items():
                if isinstance(value, (list, tuple)):
                    out.append(qe.FieldCondition(key=key, match=qe.MatchAny(list(value))))
                else:
                    out.append(qe.FieldCondition(key=key, match=qe.MatchValue(value)))
            return out or None

        return qe.Filter(must=conds(must), must_not=conds(must_not))

    def _do(self, op) -> None:
        try:
            self.shard.update(op)
        except Exception as e:
            raise StoreError(self._why("writing to", e)) from e

    def _why(self, doing: str, e: Exception) -> str:
        text = short_error(e)
        if getattr(e, "errno", None) == errno.ENOSPC or "No space left" in text or "os error 28" in text:
            return f"the disk holding {self.path} is full (No space left on device); free some space"
        return f"{doing} {self.path} failed ({text})"

    def _check_space(self, size: int) -> None:
        """Qdrant Edge writes through memory maps: a full disk is a SIGBUS, not an error, so stop
        with a sentence while there is still room for three times what is written (the reserve
        covers a new 32 MB WAL segment)."""
        want = min_free_bytes() + 3 * size
        try:
            free = shutil.disk_usage(self.path).free
        except OSError:
            return
        if free < want:
            raise StoreError(
                f"the disk holding {self.path} is nearly full ({free / 2**20:.0f} MB free, "
                f"{want / 2**20:.0f} MB wanted to write safely); free some space")

    def _vector(self, dense: Any, fields: dict[str, Any], terms: Any = None) -> Any:
        """The dense vector alone, or with the chunk's sparse one (collections made with it):
        the terms a book worker computed, else computed here from the text."""
        if not self.sparse or not wants_sparse(fields):
            return dense
        if terms is not None:
            return {"": dense, SPARSE: self.qe.SparseVector(indices=terms[0], values=terms[1])}
        return {"": dense, SPARSE: term_weights().document(fields.get("text") or "")}

    def upsert(self, points: list[PointData]) -> None:
        qe = self.qe
        self._check_space(sum(4 * len(p.vector) + len(json.dumps(p.payload)) for p in points))
        self._do(
            qe.UpdateOperation.upsert_points(
                [qe.Point(p.id, self._vector(p.vector, p.payload), p.payload) for p in points]
            )
        )

    def upsert_block(self, block: PointBlock) -> None:
        """upsert() without a Python float per vector element: Edge reads each row through the
        buffer protocol, in half the time of tolist() and the list, and the size check counts the
        shared payload once rather than serialising every point's."""
        qe = self.qe
        vectors = np.ascontiguousarray(block.vectors, dtype=np.float32)
        text = sum(len(f.get("text") or "") for f in block.fields)
        per_point = len(json.dumps(block.base)) + 512  # the chunk's own keys, besides its text
        self._check_space(vectors.nbytes + 4 * text + len(block.fields) * per_point)
        base = block.base
        terms = block.sparse or [None] * len(block.fields)
        self._do(qe.UpdateOperation.upsert_points([
            qe.Point(i, self._vector(memoryview(row), f, t), {**base, **f})
            for i, f, row, t in zip(block.ids(), block.fields, vectors, terms, strict=True)]))

    def delete_book(self, book_key: str) -> None:
        self._do(self.qe.UpdateOperation.delete_points_by_filter(self._book_filter(book_key)))

    def count_book(self, book_key: str) -> int:
        return self.shard.count(self.qe.CountRequest(exact=True, filter=self._book_filter(book_key)))

    def count(self) -> int:
        return self.shard.count(self.qe.CountRequest(exact=True))

    def counts_by_book(self) -> dict[str, int]:
        limit = max(self.count(), 1)
        response = self.shard.facet(self.qe.FacetRequest(key="book_key", limit=limit, exact=True))
        return {str(h.value): int(h.count) for h in response.hits}

    def payloads(self, book_key=None):
        qe = self.qe
        out, offset = [], None
        flt = self._book_filter(book_key) if book_key else None
        while True:
            records, offset = self.shard.scroll(
                qe.ScrollRequest(offset=offset, limit=1000, filter=flt, with_payload=True)
            )
            out.extend((str(r.id), dict(r.payload or {})) for r in records)
            if offset is None:
                return out

    def iter_points(self, fields=None, with_vectors=False, batch=1000):
        qe, offset = self.qe, None
        while True:
            records, offset = self.shard.scroll(qe.ScrollRequest(
                offset=offset, limit=batch, with_payload=list(fields) if fields else True,
                with_vector=with_vectors))
            yield [PointData(str(r.id), plain_vector(r.vector) if with_vectors else [],
                             dict(r.payload or {})) for r in records]
            if offset is None:
                return

    def set_book_payload(self, book_key: str, payload: dict[str, Any]) -> None:
        self._do(
            self.qe.UpdateOperation.set_payload_by_filter(self._book_filter(book_key), payload)
        )

    def search(self, vector, limit, must=None, must_not=None, mode="dense", text=None) -> list[Hit]:
        """dense: nearest vectors; sparse: BM25 terms of `text` (IDF from the collection);
        hybrid: both, fused by reciprocal rank in one query."""
        qe = self.qe
        mode = check_mode(mode)
        flt = self._filter(must, must_not)
        params = self.config.search_params(qe)
        if mode != "dense" and not self.sparse:
            raise UsageError(no_sparse(self.collection, f"in {self.path.parent}"))
        dense = qe.Query.Nearest(list(vector)) if mode != "sparse" else None
        sparse = (qe.Query.Nearest(term_weights().query(text or ""), using=SPARSE)
                  if mode != "dense" else None)
        if mode == "hybrid":
            n = prefetch_limit(limit)
            request = qe.QueryRequest(
                limit=limit, with_payload=True, filter=flt, query=qe.Fusion.Rrf(k=RRF_K),
                prefetches=[qe.Prefetch(limit=n, query=dense, filter=flt, params=params),
                            qe.Prefetch(limit=n, query=sparse, filter=flt)])
        else:
            request = qe.QueryRequest(limit=limit, query=dense or sparse, with_payload=True,
                                      filter=flt, params=params if dense else None)
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in self.shard.query(request)]

    def vectors(self) -> dict[str, Any]:
        """What each point of the collection can carry: {"dense": size, "sparse": [names]}."""
        return edge_vectors(self.path / "edge_config.json")

    def add_sparse(self, batch: int = 512) -> int:
        """Give every chunk its sparse vector from its stored text, without re-embedding; the
        number of points that got one.

        A collection made before sparse vectors existed cannot gain a vector kind in place (Edge
        checks a shard's vectors against its segments), so it is copied into a new shard beside it
        with both kinds, dense vectors as stored, and the two folders swapped; a kill before the
        swap leaves the old shard as it was (the copy is removed on the next open)."""
        qe = self.qe
        if self.sparse:
            return self._fill_missing(batch)
        build = self.path.with_name(self.path.name + BUILD)
        if build.exists():
            shutil.rmtree(build)
        build.mkdir(parents=True)
        dimension = edge_vectors(self.path / "edge_config.json")["dense"]
        self.config = replace(self.config, sparse=True)
        write_config(build, self.config)
        new = _create_shard(qe, build, dimension, self.config)
        filled, offset = 0, None
        try:
            while True:
                records, offset = self.shard.scroll(qe.ScrollRequest(
                    offset=offset, limit=batch, with_payload=True, with_vector=True))
                points = []
                for r in records:
                    payload = dict(r.payload or {})
                    dense = plain_vector(r.vector)
                    filled += wants_sparse(payload)
                    self.sparse = True  # _vector adds the sparse one
                    try:
                        points.append(qe.Point(r.id, self._vector(dense, payload), payload))
                    finally:
                        self.sparse = False
                if points:
                    new.update(qe.UpdateOperation.upsert_points(points))
                if offset is None:
                    break
            new.flush()
        finally:
            new.close()
        self.shard.close()
        old = self.path.with_name(self.path.name + OLD)
        os.rename(self.path, old)
        os.rename(build, self.path)  # the swap: from here on the new shard is the collection
        shutil.rmtree(old)
        self.shard = _load_shard(qe, self.path)
        self.sparse = True
        return filled

    def _fill_missing(self, batch: int) -> int:
        """A collection with sparse vectors: add them to the chunks that have none (update)."""
        qe, filled, offset = self.qe, 0, None
        while True:
            records, offset = self.shard.scroll(qe.ScrollRequest(
                offset=offset, limit=batch, with_payload=True, with_vector=[SPARSE]))
            todo = []
            for r in records:
                payload = dict(r.payload or {})
                has = isinstance(r.vector, dict) and SPARSE in r.vector
                if not has and wants_sparse(payload):
                    todo.append(qe.PointVectors(
                        r.id, {SPARSE: term_weights().document(payload.get("text") or "")}))
            if todo:
                self._do(qe.UpdateOperation.update_vectors(todo))
                filled += len(todo)
            if offset is None:
                self.flush()
                return filled

    def get(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        return {str(r.id): dict(r.payload or {}) for r in self.shard.retrieve(list(ids), True, False)}

    def store_config(self) -> dict[str, Any]:
        """The configuration this shard was created with (status reports it)."""
        return self.config.to_dict()

    def optimize(self) -> bool:
        """Build the HNSW index and quantized vectors of what was written since the last time
        (Qdrant Edge never does it in the background: unindexed points are searched by brute
        force). Blocking; True when there was something to do."""
        try:
            return bool(self.shard.optimize())
        except Exception as e:
            raise StoreError(self._why("optimising", e)) from e

    def index_part(self) -> bool:
        """Index what was written so far, in the middle of a run, as one more segment: only while
        the segments stay below the count past which the optimiser merges them (segment_target),
        since a merge re-indexes what was indexed already. False where it did not add one."""
        before = self._segments()  # the appendable segment included
        if before + 1 >= segment_target(self.config):
            return False
        # The run goes on meanwhile, maybe beside embedding servers on this box: the build
        # takes the cores they leave, not theirs.
        yielding(self.optimize)
        return self._segments() > before

    def _segments(self) -> int:
        try:
            return self.shard.info().segments_count
        except Exception as e:
            raise StoreError(self._why("reading the segments of", e)) from e

    def finish(self) -> None:
        """A run completed: index what it wrote, so searches stop scanning it."""
        self.optimize()

    def flush(self) -> None:
        try:
            self.shard.flush()
        except Exception as e:
            raise StoreError(self._why("flushing", e)) from e

    def close(self) -> None:
        shard, self.shard = getattr(self, "shard", None), None
        if shard is not None:
            shard.close()


def yielding(work: Callable[[], T], nice: int = BUILD_NICE) -> T:
    """work() on a thread of its own, `nice` steps below the caller's priority. On Linux a nice
    value is per thread and the threads a thread starts inherit it, so Qdrant's build threads,
    started for each build, yield too; the caller keeps its own priority (raising it back would
    need privileges)."""

    def lowered() -> T:
        with contextlib.suppress(OSError, AttributeError):  # not Linux: as it is
            me = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, me, os.getpriority(os.PRIO_PROCESS, me) + nice)
        return work()

    with ThreadPoolExecutor(1, thread_name_prefix="alexandria-index") as pool:
        return pool.submit(lowered).result()


BUILD = ".sparse-build"  # beside DIR/<collection>: the copy add_sparse makes
OLD = ".before-sparse"  # the old shard between the two renames of the swap


def _edge_config(qe, dimension: int, config: StoreConfig, threads: int):
    """The unnamed dense vector (cosine, as `config` stores and indexes it), the sparse one (IDF)."""
    return config.edge_config(qe, dimension, sparse_vectors={
        SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)} if config.sparse else None,
        index_threads=threads)


def _create_shard(qe, path: Path, dimension: int, config: StoreConfig):
    """A new shard (_edge_config), keyword indexes on the fields searches filter on."""
    shard = qe.EdgeShard.create(str(path), _edge_config(qe, dimension, config, index_threads()))
    for name in KEYWORD_INDEXES:
        shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword))
    shard.flush()
    return shard


def _finish_swap(path: Path) -> None:
    """A kill between add_sparse's two renames left the old shard moved aside: put it back."""
    old = path.with_name(path.name + OLD)
    if old.exists() and not path.exists():
        os.rename(old, path)


def _drop_leftovers(path: Path) -> None:
    """With the shard's lock held (no add_sparse runs on it): an unfinished copy, or the old
    shard of a finished swap, is removed."""
    for leftover in (path.with_name(path.name + BUILD), path.with_name(path.name + OLD)):
        if leftover.exists():
            shutil.rmtree(leftover, ignore_errors=True)


def _reopen_config(qe, path: Path, config: StoreConfig, dimension: int | None):
    """The EdgeConfig that opens this shard as it was created but with this machine's HNSW build
    threads (they are part of Edge's configuration, written at creation, and a store moves between
    machines); None where it already has them, or where `config` does not make the shard's own
    configuration exactly, since Edge would take any other difference as a change to apply."""
    threads = index_threads()
    try:
        stored = json.loads((path / "edge_config.json").read_text())
        had = (stored.get("hnsw_config") or {}).get("max_indexing_threads")
        if had is None or had == threads or dimension is None:
            return None
        # What Edge writes for `config` itself, from a throwaway shard: the one exact comparison.
        with tempfile.TemporaryDirectory(prefix="alexandria-config-") as probe:
            qe.EdgeShard.create(probe, _edge_config(qe, dimension, config, had)).close()
            made = json.loads((Path(probe) / "edge_config.json").read_text())
    except Exception as e:  # Edge raises plain Exception; the shard then opens as it is
        log.debug("the store %s keeps its index threads: %s", path, e)
        return None
    # Keys Edge fills in with its defaults on a reopen are not part of what was asked.
    if {k: v for k, v in stored.items() if k in made} != made:
        log.debug("the store %s keeps its index threads: its configuration is not this "
                  "version's", path)
        return None
    return _edge_config(qe, dimension, config, threads)


def _load_shard(qe, path: Path, config=None, wait_s: float = 10.0):
    """A killed run's store process may still be finishing its last write: wait for its lock.
    config (_reopen_config) is a fresh thread count, dropped if Edge refuses it."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return qe.EdgeShard.load(str(path), config)
        except Exception as e:
            busy = "WouldBlock" in str(e)
            if busy and time.monotonic() <= deadline:
                time.sleep(0.1)
            elif not busy and config is not None:
                log.debug("the store %s keeps its index threads: %s", path, e)
                config = None
            else:
                raise


def edge_vectors(config_file: Path) -> dict[str, Any]:
    """The vectors an Edge collection holds, from its config file (no shard opened):
    {"dense": size or None, "sparse": [names]}."""
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError):
        return {"dense": None, "sparse": []}
    return {"dense": edge_dimension(config_file),
            "sparse": sorted((config.get("sparse_vectors") or {}).keys())}


def edge_dimension(config_file: Path) -> int | None:
    try:
        vectors = json.loads(config_file.read_text())["vectors"]
        return int(vectors[""]["size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def min_free_bytes() -> int:
    """Free space an Edge store keeps in reserve (ALEXANDRIA_MIN_FREE_MB, default 64 MB)."""
    try:
        return int(float(os.environ.get("ALEXANDRIA_MIN_FREE_MB", "64")) * 2**20)
    except ValueError:
        return 64 * 2**20


def _check_free(path: Path) -> None:
    """Opening an Edge store writes (a new segment, WAL pages through memory maps): on a full disk
    that is a SIGBUS, so refuse with a sentence first."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return
    if free < min_free_bytes():
        raise RunFailure(
            f"The disk holding {path} has only {free / 2**20:.0f} MB free; the store needs "
            f"{min_free_bytes() / 2**20:.0f} MB (ALEXANDRIA_MIN_FREE_MB) to open safely; free "
            "some space.")


