"""What a run will do: the library's books, and per book one decision from one stat each."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Any

from alexandria.errors import RunFailure, UsageError
from alexandria.run.options import IngestOptions, check_chunk_options
from alexandria.run.report import path_text
from alexandria.sources import library
from alexandria.sources.library import Book
from alexandria.sources.paths import resolve_library_path
from alexandria.store.manifest import Manifest

HASH_THREADS = 8  # files hashed at once by a run's plan (hash_all)


def gather_books(opts: IngestOptions) -> tuple[list[Book], list[Book]]:
    """(the books this run works on, every book the library has): pruning needs the latter."""
    everything: list[Book] = []
    if opts.directory is not None:
        opts.directory = resolve_library_path(opts.directory)  # //server/share -> its mount
        everything.extend(library.scan(opts.directory, opts.formats))
    selected = select(everything, opts)
    for f in opts.files:
        path = Path(f).expanduser()
        if not path.exists():
            raise UsageError(f"The file {path} does not exist.")
        selected.append(library.book_from_file(path))
    if opts.directory is None and not opts.files:
        raise UsageError("Nothing to ingest: give --directory PATH or --file PATH.")
    return selected, everything


def select(books: list[Book], opts: IngestOptions) -> list[Book]:
    """--book-id, --author, --tag, --since, --limit: try a slice of a big library first."""
    out = list(books)
    if opts.book_ids:
        wanted = set(opts.book_ids)
        out = [b for b in out if b.calibre_id in wanted]
    if opts.authors:
        names = {a.casefold() for a in opts.authors}
        out = [b for b in out if names & {a.casefold() for a in b.authors}]
    if opts.tags:
        tags = {t.casefold() for t in opts.tags}
        out = [b for b in out if tags & {t.casefold() for t in b.tags}]
    if opts.since is not None:
        since = opts.since if opts.since.tzinfo else opts.since.replace(tzinfo=timezone.utc)
        out = [b for b in out if (b.changed_at() or since) >= since]
    if opts.limit is not None:
        out = out[: opts.limit]
    return out


def prune_candidates(opts: IngestOptions, planned: list[Planned], rows: dict,
                     everything: list[Book]) -> list[tuple[str, str]]:
    """Books the store has but the library no longer does: (key, why) to delete."""
    if opts.directory is None:
        return []  # --file runs never prune
    root = Path(opts.directory).expanduser().resolve()
    in_library = {b.key for b in everything if b.calibre_id is not None}
    missing = {b.key for b in everything if b.fail_reason == "file-missing" and b.calibre_id}
    superseded = {k for p in planned for k in p.replaces}
    out = []
    for row in rows.values():
        if row.status == "removed" or row.book_key in superseded:
            continue
        if row.calibre_id is not None:
            if row.book_key in missing and row.stored_points:
                out.append((row.book_key, "file-missing"))
            elif in_library and row.book_key not in in_library:
                out.append((row.book_key, "removed-from-library"))
        elif row.source_path and is_under(Path(row.source_path), root):
            if not Path(row.source_path).exists():
                out.append((row.book_key, "file-gone"))
    if out and not everything and library_gone(root):
        # An unmounted share leaves an empty mount point: that is not "every book was deleted".
        raise RunFailure(
            f"The library folder {root} is empty or gone, but the manifest lists {len(out)} books "
            "from it (is the share mounted?); nothing was removed (use --no-prune to go on).")
    return out


def library_gone(root: Path) -> bool:
    """The library folder vanished or is an empty mount point (a share that was unmounted)."""
    try:
        return not root.is_dir() or not any(root.iterdir())
    except OSError:
        return True


def is_under(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
        return True
    except ValueError:
        return False


@dataclass
class Planned:
    book: Book
    action: str  # ingest | unchanged | metadata | skip | fail
    reason: str | None = None
    content_hash: str | None = None
    replaces: list[str] = field(default_factory=list)  # keys of older versions at the same path


def plan(
    books: list[Book], rows: dict, chunker: str, model: str, force: bool
) -> list[Planned]:
    """Decide per book from one stat each; hash only files whose size or mtime moved."""
    by_path = {r.source_path: r for r in rows.values() if r.source_path and r.calibre_id is None}
    hashes = hash_all([b for b in books if not (b.fail_reason or b.skip_reason or b.key)
                        and known_hash(b, by_path) is None])
    planned: list[Planned] = []
    seen: set[str] = set()
    for book in books:
        if book.fail_reason:
            book.key = book.key or f"path:{book.path}"
            planned.append(Planned(book, "fail", book.fail_reason))
            continue
        if book.skip_reason:
            book.key = book.key or f"path:{book.path}"
            planned.append(Planned(book, "skip", book.skip_reason))
            continue
        content_hash = None
        if not book.key:  # a plain file: its key is its content hash, cached by path+size+mtime
            content_hash = known_hash(book, by_path) or hashes[id(book)]
            if content_hash is None:
                book.key = f"path:{book.path}"
                planned.append(Planned(book, "fail", "file-missing"))
                continue
            book.key = f"sha256:{content_hash[:32]}"
        if book.key in seen:  # the same file twice (two --file flags, or a copy in the folder)
            continue
        seen.add(book.key)
        row = rows.get(book.key)
        replaces = []
        if book.calibre_id is None:
            old = by_path.get(str(book.path))
            if old is not None and old.book_key != book.key and old.status != "removed":
                replaces.append(old.book_key)
        if force or row is None or row.status != "done":
            planned.append(Planned(book, "ingest", content_hash=content_hash, replaces=replaces))
            continue
        if row.chunker != chunker or row.model != model:
            planned.append(Planned(book, "ingest", content_hash=content_hash, replaces=replaces))
            continue
        if (row.size, row.mtime_ns) != (book.size, book.mtime_ns):
            content_hash = content_hash or hash_or_none(book)
            if content_hash != row.content_hash:
                planned.append(Planned(book, "ingest", content_hash=content_hash))
                continue
        # Plain files carry no library metadata: their title and authors come from the EPUB,
        # which is unchanged here, so only calibre books can have metadata-only edits.
        edited = book.calibre_id is not None and row.meta_hash != book.metadata_hash()
        action = "metadata" if edited else "unchanged"
        planned.append(Planned(book, action, content_hash=content_hash or row.content_hash))
    return planned


def known_hash(book: Book, by_path: dict) -> str | None:
    """The manifest's hash of a plain file whose size and mtime have not moved."""
    old = by_path.get(str(book.path))
    if old and (old.size, old.mtime_ns) == (book.size, book.mtime_ns) and old.content_hash:
        return old.content_hash
    return None


def hash_all(books: list[Book]) -> dict[int, str | None]:
    """A first run over a plain folder hashes every file before anything else can start:
    hashlib lets go of the GIL, so threads read and hash several at once (and hide a NAS's
    latency)."""
    if len(books) < 2:
        return {id(b): hash_or_none(b) for b in books}
    with ThreadPoolExecutor(min(HASH_THREADS, len(books))) as pool:
        return dict(zip(map(id, books), pool.map(hash_or_none, books), strict=True))


def hash_or_none(book: Book) -> str | None:
    try:
        return library.file_hash(book.path)  # type: ignore[arg-type]
    except OSError:
        return None


def start_order(planned: list[Planned]) -> list[Planned]:
    """Smallest, largest, next smallest, next largest...: a small book reaches the GPU within
    seconds of the start, and the largest books are not the last ones still being parsed
    (a big book takes one core many seconds) while the GPU waits at the end."""
    by_size = sorted(planned, key=lambda p: p.book.size or 0)
    out: list[Planned] = []
    lo, hi = 0, len(by_size) - 1
    while lo <= hi:
        out.append(by_size[lo])
        if hi != lo:
            out.append(by_size[hi])
        lo, hi = lo + 1, hi - 1
    return out


def row_fields(p: Planned, model_source: str, fingerprint: str, run_id: int) -> dict[str, Any]:
    """A planned book's manifest row, as the writer records it."""
    b = p.book
    return {
        "calibre_id": b.calibre_id,
        "title": b.title,
        "source_path": str(b.path) if b.path else None,
        "size": b.size,
        "mtime_ns": b.mtime_ns,
        "content_hash": p.content_hash,
        "meta_hash": b.metadata_hash(),
        "model": model_source,
        "chunker": fingerprint,
        "run_id": run_id,
    }


def nothing_found(opts: IngestOptions) -> str:
    """Why a run has no book: a folder with none of the chosen formats, or filters that left none."""
    formats = ", ".join(opts.formats)
    if opts.directory is None:
        return "No book to ingest."
    if opts.limit is not None or opts.authors or opts.tags or opts.book_ids or opts.since:
        return f"No book in {opts.directory} matches --limit/--author/--tag/--book-id/--since."
    return f"No books of the formats {formats} were found in {opts.directory}{other_formats(opts)}."


def other_formats(opts: IngestOptions) -> str:
    """The readable files of other formats the folder does hold, as a hint for --formats."""
    from alexandria.sources.readers import READERS

    found: dict[str, int] = {}
    for path in Path(opts.directory).rglob("*"):  # type: ignore[arg-type]
        fmt = path.suffix.lower().lstrip(".")
        if fmt in READERS and fmt not in opts.formats and path.is_file():
            found[fmt] = found.get(fmt, 0) + 1
    if not found:
        return ""
    listed = ", ".join(f"{n} {fmt}" for fmt, n in sorted(found.items()))
    return f" (it has {listed} files: add them with --formats {','.join([*opts.formats, *found])})"


def plan_run(opts: IngestOptions) -> dict[str, Any]:
    """What the next run would do, without doing it: no model weights, nothing written."""
    check_chunk_options(opts)
    where = opts.location()
    books, everything = gather_books(opts)
    rows = {}
    if where.manifest.exists():
        m = Manifest.for_reading(where.manifest)
        try:
            rows = m.rows(where.collection)
        finally:
            m.close()
    # The fingerprint needs the model's tokenizer: only rows are compared with it.
    planned = plan(books, rows, where.fingerprint if rows else "", where.spec.source, opts.force)
    removals = prune_candidates(opts, planned, rows, everything) if opts.prune else []
    counts = dict.fromkeys(("new", "changed", "metadata-only", "removed", "unchanged", "skipped",
                            "failed"), 0)
    books_out = []
    for p in planned:
        if p.action == "ingest":
            kind = "new" if p.book.key not in rows else "changed"
        else:
            kind = {"metadata": "metadata-only", "skip": "skipped", "fail": "failed"}.get(
                p.action, p.action)
        counts[kind] += 1
        books_out.append({"book_key": p.book.key, "calibre_id": p.book.calibre_id,
                          "title": p.book.title, "path": path_text(p.book.path), "action": kind,
                          "reason": p.reason})
    for key, why in removals:
        counts["removed"] += why != "file-missing"
        row = rows[key]
        books_out.append({"book_key": key, "calibre_id": row.calibre_id, "title": row.title,
                          "path": row.source_path, "action": "removed", "reason": why})
    return {"collection": where.collection, "manifest": str(where.manifest), "counts": counts,
            "books": books_out, "nothing": None if books_out else nothing_found(opts)}
