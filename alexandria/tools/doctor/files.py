"""The store folder, the library, the manifest, the disk and the run lock."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from alexandria.tools.doctor.report import Check, gib, nearest_existing, one_line

if TYPE_CHECKING:
    from alexandria.tools.doctor.model_store import Context


LOW_DISK_BYTES = 1 << 30


def writable_problem(folder: Path) -> str | None:
    """None when a file can be created (and removed) in folder, else why not."""
    try:
        fd, name = tempfile.mkstemp(prefix=".alexandria-doctor-", dir=folder)
    except OSError as e:
        return e.strerror or str(e)
    os.close(fd)
    try:
        os.unlink(name)
    except OSError:
        pass
    return None


def check_store_folder(store: Path) -> Check:
    if store.exists():
        if not store.is_dir():
            return Check("store folder", "fail", f"{store} exists but is not a folder")
        problem = writable_problem(store)
        if problem:
            return Check("store folder", "fail", f"{store} is not writable ({problem})")
        return Check("store folder", "ok", f"{store} exists and is writable")
    parent = nearest_existing(store)
    if not parent.is_dir():
        return Check("store folder", "fail", f"{store} cannot be created: {parent} is not a folder")
    problem = writable_problem(parent)
    if problem:
        return Check("store folder", "fail", f"{store} cannot be created: {parent} is not writable "
                     f"({problem})")
    return Check("store folder", "ok", f"{store} does not exist yet; the first run creates it")


def check_library(directory: Path) -> list[Check]:
    from alexandria.sources.library import is_calibre_library, scan

    if not directory.exists():
        return [Check("library", "fail", f"{directory} does not exist")]
    if not directory.is_dir():
        return [Check("library", "fail", f"{directory} is not a folder")]
    if not os.access(directory, os.R_OK | os.X_OK):
        return [Check("library", "fail", f"{directory} is not readable")]
    if is_calibre_library(directory):
        books = scan(directory)
        readable = sum(1 for b in books if b.path is not None and not b.skip_reason and not b.fail_reason)
        missing = sum(1 for b in books if b.fail_reason)
        skipped = sum(1 for b in books if b.skip_reason)
        detail = (f"calibre library {directory}: {len(books)} books ({readable} to ingest, "
                  f"{skipped} without an EPUB, {missing} with a missing file)")
        status = "warn" if missing or not books else "ok"
        return [Check("library", status, detail)]
    count = 0
    for _dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        count += sum(1 for f in filenames if f.lower().endswith(".epub"))
    if not count:
        return [Check("library", "warn", f"{directory} has no metadata.db and no .epub files")]
    return [Check("library", "ok", f"folder of EPUBs {directory}: {count} books")]


def check_manifest(ctx: Context) -> list[Check]:
    return [manifest_check(ctx.where.manifest, ctx.collection_name())]


def manifest_check(path: Path, collection: str | None) -> Check:
    if not path.exists():
        return Check("manifest", "info", f"{path} does not exist yet; the first ingest creates it")
    if not path.is_file():
        return Check("manifest", "fail", f"{path} is not a file")
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as e:
        return Check("manifest", "fail", f"{path} cannot be opened ({one_line(e)})")
    try:
        result = [r[0] for r in con.execute("PRAGMA integrity_check").fetchall()]
        if result != ["ok"]:
            return Check("manifest", "fail", f"{path} is damaged ({one_line(result[0] if result else '?')});"
                         " run `alexandria repair` to rebuild it from the store")
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "books" not in tables:
            return Check("manifest", "fail", f"{path} is a SQLite file but not an Alexandria manifest")
        rows = con.execute(
            "SELECT collection, status, count(*) FROM books GROUP BY collection, status"
        ).fetchall()
    except sqlite3.Error as e:
        return Check("manifest", "fail", f"{path} is unreadable ({one_line(e)}); run "
                     "`alexandria repair` to rebuild it from the store")
    finally:
        con.close()
    mine = {status: n for coll, status, n in rows if coll == collection}
    others = {coll for coll, _status, _n in rows if coll != collection}
    order = ["done", "failed", "skipped", "pending", "in-progress", "removed"]
    parts = [f"{mine[s]} {s}" for s in order if mine.get(s)]
    parts += [f"{n} {s}" for s, n in sorted(mine.items()) if s not in order]
    books = sum(n for s, n in mine.items() if s != "removed")
    detail = f"{path}: integrity ok; {collection}: {books} books"
    if parts:
        detail += f" ({', '.join(parts)})"
    if others:
        detail += f"; also {len(others)} other collection(s)"
    status = "ok"
    if mine.get("in-progress"):
        status = "info"
        detail += "; in-progress rows are from a running or killed run, the next run redoes them"
    return Check("manifest", status, detail)


def check_disk(store: Path) -> list[Check]:
    where = nearest_existing(store)
    usage = shutil.disk_usage(where)
    detail = f"{gib(usage.free)} free of {gib(usage.total)} at {where}"
    if usage.free < LOW_DISK_BYTES:
        return [Check("disk space", "warn", f"{detail}; the store and manifest may fill it")]
    return [Check("disk space", "ok", detail)]


def check_lock(path: Path) -> list[Check]:
    """The lock the ingest takes: beside the manifest, wherever --manifest puts it."""
    from alexandria.store.lock import probe

    if not path.exists():
        return [Check("lock", "info", f"{path} does not exist yet; no run has taken it")]
    holder = probe(path)
    if holder is None:
        return [Check("lock", "ok", f"{path} is free")]
    who = f"PID {holder.pid}" if holder.pid is not None else "an unknown process"
    if holder.host:
        who += f" on {holder.host}"
    since = f" since {holder.started}" if holder.started else ""
    return [Check("lock", "info", f"{path} is held by {who}{since}: a run is in progress")]
