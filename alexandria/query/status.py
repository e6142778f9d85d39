"""What the manifest says, and with --verify whether the store agrees (silent drift shows here)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from alexandria.store.config import read_config
from alexandria.store.location import Location
from alexandria.store.manifest import Manifest
from alexandria.store.sparse_fill import collection_vectors


def status(where: Location, verify: bool = False, read_only: bool = False) -> dict[str, Any]:
    """Every book's row in the manifest, the totals and the last run; with `verify`, each book's
    points counted in the store beside it (mismatches and orphans are drift). `read_only` opens
    the manifest read-only even where it could be written (alexandria serve never writes it)."""
    collection, mpath = where.collection, where.manifest
    if not mpath.exists():
        rows, last = {}, None
    else:
        m = Manifest.for_reading(mpath, always=read_only)
        try:
            rows, last = m.rows(collection), m.last_run(collection)
            if last and not last.get("finished_at"):  # killed, or still running: its counts so far
                last["so_far"] = m.run_counts(collection, last["id"])
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
        "last_run": _last_run(last), "vectors": collection_vectors(where),
        "store_config": _store_config(where),
    }
    if verify:
        s = where.open_store() if rows else None
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


def _store_config(where: Location) -> dict[str, Any] | None:
    """The embedded collection's configuration, as created (None: a server, or no collection)."""
    shard = where.store / where.collection
    if where.url or not (shard / "edge_config.json").is_file():
        return None
    return read_config(shard).to_dict()


def _last_run(last: dict[str, Any] | None) -> dict[str, Any] | None:
    if not last:
        return None
    import json

    report = json.loads(last["report"]) if last.get("report") else {}
    report = {**last.get("so_far", {}), **report}  # an unfinished run: what its books recorded
    return {
        "id": last["id"], "started_at": last["started_at"], "finished_at": last["finished_at"],
        "outcome": last["outcome"] or "unfinished",
        **{k: report.get(k) for k in ("books_done", "books_failed", "books_skipped", "chunks",
                                       "tokens", "elapsed_s", "chunks_per_min", "tokens_per_s")},
        **({"books_in_progress": report.get("books_in_progress", 0)}
           if not last["finished_at"] else {}),
    }
