"""Alexandria: a Calibre library -> searchable Qdrant vector store, resumable and incremental.

The Python API (docs/python-api.md); the `alexandria` command is a thin layer over it::

    from alexandria import IngestOptions, SearchOptions, ingest, search

    report = ingest(IngestOptions(directory="library", model="minilm", device="cpu"))
    for hit in search("how did a toggling harpoon work?", SearchOptions(model="minilm")):
        print(hit.score, hit.title, hit.chapter)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Name -> module. Loaded on first use, so `import alexandria` (and the CLI's --help) stays fast
# and loads neither torch nor the store engines.
_API = {
    "ingest": "alexandria.run.ingest",
    "Ingest": "alexandria.run.ingest",
    "plan": "alexandria.run.plan",
    "IngestOptions": "alexandria.run.options",
    "RunLimits": "alexandria.run.options",
    "RunReport": "alexandria.run.report",
    "BookResult": "alexandria.run.report",
    "StopRequested": "alexandria.run.control",
    "search": "alexandria.query.search",
    "SearchOptions": "alexandria.query.search",
    "Result": "alexandria.query.search",
    "Searcher": "alexandria.query.search",
    "serve": "alexandria.serve.server",
    "ServeOptions": "alexandria.serve.options",
    "status": "alexandria.query.status",
    "export": "alexandria.store.export",
    "ExportReport": "alexandria.store.export",
    "repair": "alexandria.store.repair",
    "add_sparse": "alexandria.store.sparse_fill",
    "RepairReport": "alexandria.store.repair",
    "Location": "alexandria.store.location",
    "ChunkSettings": "alexandria.chunking.settings",
    "UsageError": "alexandria.errors",
    "RunFailure": "alexandria.errors",
    "LockBusy": "alexandria.store.lock",
}
_RENAMED = {"plan": "plan_run"}

__all__ = [
    "BookResult",
    "ChunkSettings",
    "ExportReport",
    "Ingest",
    "IngestOptions",
    "Location",
    "LockBusy",
    "RepairReport",
    "Result",
    "RunFailure",
    "RunLimits",
    "RunReport",
    "SearchOptions",
    "Searcher",
    "ServeOptions",
    "StopRequested",
    "UsageError",
    "add_sparse",
    "export",
    "ingest",
    "plan",
    "repair",
    "search",
    "serve",
    "status",
]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'alexandria' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


if TYPE_CHECKING:
    from alexandria.chunking.settings import ChunkSettings
    from alexandria.errors import RunFailure, UsageError
    from alexandria.query.search import Result, Searcher, SearchOptions, search
    from alexandria.query.status import status
    from alexandria.run.control import StopRequested
    from alexandria.run.ingest import Ingest, ingest
    from alexandria.run.options import IngestOptions, RunLimits
    from alexandria.run.plan import plan_run as plan
    from alexandria.run.report import BookResult, RunReport
    from alexandria.serve.options import ServeOptions
    from alexandria.serve.server import serve
    from alexandria.store.export import ExportReport, export
    from alexandria.store.location import Location
    from alexandria.store.lock import LockBusy
    from alexandria.store.repair import RepairReport, repair
    from alexandria.store.sparse_fill import add_sparse
