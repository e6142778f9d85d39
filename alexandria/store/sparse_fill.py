"""`alexandria ingest --add-sparse`: sparse vectors for the chunks of a collection that lack them,
from the text stored with each point (nothing is embedded again), under the run lock."""

from __future__ import annotations

from typing import Any

from alexandria.store.edge import edge_vectors
from alexandria.store.location import Location
from alexandria.store.lock import RunLock


def add_sparse(where: Location, wait_lock: float = 0.0) -> int:
    """The number of chunks that got a sparse vector (an old collection is rebuilt with them)."""
    with RunLock(where.lock, wait_lock):  # no ingest writes meanwhile
        store = where.open_store()
        try:
            return store.add_sparse()
        finally:
            store.close()


def collection_vectors(where: Location) -> dict[str, Any] | None:
    """What the collection's points carry, {"dense": size, "sparse": [names]}; None where it does
    not exist. An embedded store's is read from its config file: no shard is opened."""
    if where.url:
        from alexandria.errors import UsageError
        from alexandria.store.base import StoreError

        try:  # status works from the manifest alone: a server it cannot reach is no error here
            store = where.open_store()
        except (UsageError, StoreError):
            return None
        try:
            return store.vectors()
        finally:
            store.close()
    config = where.store / where.collection / "edge_config.json"
    return edge_vectors(config) if config.is_file() else None
