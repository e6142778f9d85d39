"""Copy an embedded Qdrant Edge collection into a Qdrant server: start embedded, move later.

Vectors, payloads and point ids go over as they are (nothing is re-embedded), in batches, so the
local manifest stays valid for the server collection: point the next ingest at the server with
the same --store (for the manifest) and --collection, and it finds every book unchanged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from alexandria.errors import UsageError
from alexandria.store.base import RetryPolicy
from alexandria.store.edge import edge_dimension
from alexandria.store.location import Location
from alexandria.store.lock import RunLock
from alexandria.store.process import StoreProcess
from alexandria.store.server import ServerStore

log = logging.getLogger("alexandria")


@dataclass
class ExportReport:
    source: str
    target: str
    collection: str
    points: int
    target_points: int
    batches: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sentence(self) -> str:
        rate = self.points / self.seconds if self.seconds else 0.0
        return (f"Copied {self.points} points of {self.source} to collection {self.collection!r} "
                f"on {self.target} in {self.batches} batches ({self.seconds:.1f}s, {rate:.0f} "
                f"points/s); the target now holds {self.target_points} points.")


def export(
    where: Location,
    to_url: str | None = None,
    to_path: str | None = None,
    *,
    api_key: str | None = None,
    to_collection: str | None = None,
    batch: int = 256,
    client: Any = None,
    timeout: int = 60,
    prefer_grpc: bool = True,
    retries: int = 5,
    wait_lock: float = 0.0,
) -> ExportReport:
    """Stream every point of the embedded collection `where` names into a server collection
    (created if missing), under the run lock so no ingest writes meanwhile.

    `client` is any qdrant-client QdrantClient (a test passes a local-mode one); otherwise
    to_url (a server, `api_key` its key) or to_path (qdrant-client's local mode) says where.
    """
    if where.url:
        raise UsageError("export copies from the embedded store (--store), not from "
                         "--qdrant-url; give the server as --to-url.")
    with RunLock(where.lock, wait_lock):
        return _export(where.store, where.collection, to_url, to_path, api_key, to_collection,
                       batch, client, timeout, prefer_grpc, retries)


def _export(store_dir: Path, collection: str, to_url: str | None, to_path: str | None,
            api_key: str | None, to_collection: str | None, batch: int, client: Any,
            timeout: int, prefer_grpc: bool, retries: int) -> ExportReport:
    if batch < 1:
        raise UsageError("--batch must be at least 1.")
    if client is None and not to_url and not to_path:
        raise UsageError("Say where to copy to: --to-url URL (a Qdrant server) or --to-path DIR.")
    started = time.perf_counter()
    src = StoreProcess(Path(store_dir), collection, None)  # served by the shard's owner
    dst = None
    try:
        dimension = edge_dimension(src.path / "edge_config.json")
        total = src.count()
        target_name = to_collection or collection
        dst = ServerStore(target_name, dimension, url=to_url, api_key=api_key, path=to_path,
                          timeout=timeout, prefer_grpc=prefer_grpc,
                          retry=RetryPolicy(retries=retries), bulk_load=True, client=client)
        copied = batches = 0
        for page in src.iter_points(with_vectors=True, batch=batch):
            if not page:
                continue
            if dimension is None:  # an old config without a size: the vectors say it
                dimension = len(page[0].vector)
            dst.upsert(page)
            copied += len(page)
            batches += 1
            if batches % 20 == 0:
                log.info("export: %d of %d points", copied, total)
        dst.finish()  # a collection created here gets its HNSW index built once, now
        target_points = dst.count()
        if target_points < copied:
            raise UsageError(f"The target collection {target_name!r} on {dst.where} holds "
                             f"{target_points} points after copying {copied}; run export again.")
        report = ExportReport(str(src.path), dst.where, target_name, copied, target_points,
                              batches, round(time.perf_counter() - started, 2))
    finally:
        src.close()
        if dst is not None:
            dst.close()
    return report
