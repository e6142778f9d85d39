"""What every reader returns: a book's metadata and its chapters of plain text, or a named reason."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Chapter:
    index: int  # 0-based position among the chapters returned, in reading (spine) order
    title: str  # from the nav/NCX ("Part II > Chapter 3"); else the previous spine item's title
    href: str  # the spine item's path inside the container
    text: str  # paragraphs separated by "\n\n", whitespace inside a paragraph collapsed


@dataclass
class ExtractedBook:
    title: str | None
    authors: list[str]
    language: str | None
    chapters: list[Chapter]  # only chapters with non-empty text
    warnings: list[str] = field(default_factory=list)


class ExtractError(Exception):
    """A book that cannot be read; `reason` is a short stable slug for reports and manifests.

    Reasons: empty-file, not-a-zip, password-protected, too-large, no-container,
    no-package-document, bad-xml, missing-spine, drm, no-text, and two more:
    - missing-content: the spine lists documents but none can be read from the container (absent,
      outside it, oversized, corrupt); unlike no-text, the book is damaged rather than image-only.
    - corrupt-zip: a zip whose container.xml or package document is present but does not inflate
      (bad CRC, damaged deflate stream); not-a-zip or no-container would send one looking elsewhere.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)  # both in args, so it survives pickling between processes
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"
