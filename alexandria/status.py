"""What the manifest says, and with --verify whether the store agrees (silent drift shows here)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from .manifest import Manifest
from .models import resolve_model
from .pipeline import default_collection, manifest_path
from .store import open_store


def status(
    model: str,
    store: Path,
    collection: str | None = None,
    manifest: Path | None = None,
    qdrant_url: str | None = None,
    api_key: str | None = None,
    verify: bool = False,
    chunker: str = "structural",
) -> dict[str, Any]:
    spec = resolve_model(model)
    collection = collection or default_collection(spec, chunker)
    mpath = manifest_path(store, manifest)
    if not mpath.exists():
        rows, last = {}, None
    else:
        m = Manifest(mpath)
        try:
            rows, last = m.rows(collection), m.last_run(collection)
        finally:
            m.close()
    books = [
        {
            "book_key": r.book_key, "calibre_id": r.calibre_id, "title": r.title,
            "path": r.source_path, "status": r.status, "chunks": r.chunks, "tokens": r.tokens,
            "reason": r.reason, "stored_points": r.stored_points,
        }
        for r in sorted(rows.values(), key=lambda r: (r.calibre_id or 0, r.title or ""))
    ]
    counts = Counter(b["status"] for b in books)
    live = [b for b in books if b["status"] != "removed"]
    totals = {
        "books": len(live),
        **{s: counts.get(s, 0) for s in ("done", "failed", "skipped", "pending", "in-progress",
                                         "removed")},
        "chunks": sum(b["chunks"] for b in books if b["status"] == "done"),
        "tokens": sum(b["tokens"] for b in books if b["status"] == "done"),
    }
    out: dict[str, Any] = {
        "collection": collection, "manifest": str(mpath), "books": books, "totals": totals,
        "last_run": _last_run(last),
    }
    if verify:
        s = open_store(collection, None, store, qdrant_url, api_key) if rows else None
        counts_in_store = s.counts_by_book() if s else {}
        if s:
            s.close()
        mismatches = 0
        for b in books:
            b["store_points"] = counts_in_store.pop(b["book_key"], 0)
            if b["store_points"] != b["stored_points"]:
                b["mismatch"] = True
                mismatches += 1
        # Points whose book the manifest does not know at all: orphans.
        out["orphans"] = [{"book_key": k, "store_points": v} for k, v in counts_in_store.items()]
        out["mismatches"] = mismatches + len(out["orphans"])
        totals["store_points"] = sum(b["store_points"] for b in books) + sum(
            o["store_points"] for o in out["orphans"])
    return out


def _last_run(last: dict[str, Any] | None) -> dict[str, Any] | None:
    if not last:
        return None
    import json

    report = json.loads(last["report"]) if last.get("report") else {}
    return {
        "id": last["id"], "started_at": last["started_at"], "finished_at": last["finished_at"],
        "outcome": last["outcome"] or "unfinished",
        **{k: report.get(k) for k in ("books_done", "books_failed", "books_skipped", "chunks",
                                       "tokens", "elapsed_s", "chunks_per_min", "tokens_per_s")},
    }
