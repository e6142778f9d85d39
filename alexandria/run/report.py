"""What a run tells its caller: one BookResult per book, and the RunReport of the whole run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class BookResult:
    book_key: str
    title: str
    path: str | None
    status: str  # done | skipped | failed | unchanged | metadata
    reason: str | None = None
    chunks: int = 0
    tokens: int = 0
    seconds: float = 0.0


@dataclass
class RunReport:
    books_total: int = 0
    books_done: int = 0
    books_skipped: int = 0
    books_failed: int = 0
    books_unchanged: int = 0
    books_metadata_updated: int = 0
    books_removed: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    chunks: int = 0
    tokens: int = 0
    elapsed_s: float = 0.0
    chunks_per_min: float = 0.0
    tokens_per_s: float = 0.0
    vram_peak_mb: float | None = None
    vram_peak_nvml_mb: float | None = None
    device: str = ""
    model: str = ""
    dtype: str = ""
    packed: bool = False  # batches without pad tokens (--packing)
    collection: str = ""
    store: str = ""
    manifest: str = ""
    dry_run: bool = False
    interrupted: str | None = None
    stages_s: dict[str, float] = field(default_factory=dict)
    # an embedded store's index builds during the run (stages_s "index_during"), before its end's
    index_builds: int = 0
    # --embed-url runs: requests, texts and concurrency at the end, per embedding server
    endpoints: dict[str, dict[str, float]] = field(default_factory=dict)
    books: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.books_failed else 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add(self, result: BookResult) -> None:
        self.books.append(asdict(result))
        if result.status == "done":
            self.books_done += 1
            self.chunks += result.chunks
            self.tokens += result.tokens
        elif result.status == "failed":
            self.books_failed += 1
            self.failures.append(
                {"book": result.title, "path": result.path, "reason": result.reason}
            )
        elif result.status == "metadata":
            self.books_metadata_updated += 1
            self.books_skipped += 1
        elif result.status == "removed":
            self.books_removed += 1
        else:  # skipped by the library (no-epub) or unchanged since the last run
            self.books_skipped += 1
            if result.status == "unchanged":
                self.books_unchanged += 1


def path_text(path: Path | None) -> str | None:
    return str(path) if path else None


def warnings_text(warnings: list[str], detail: str) -> str | None:
    parts = list(warnings) + ([detail] if detail else [])
    return "; ".join(parts) if parts else None
