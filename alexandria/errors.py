"""Two kinds of failure: the user's (stop the run, one sentence) and a book's (record it, go on)."""

from __future__ import annotations


class UsageError(Exception):
    """A mistake in flags, configuration or environment: reported as one sentence, exit code 2."""

    exit_code = 2


class BookError(Exception):
    """One book cannot be ingested; `reason` is a stable slug stored in the manifest and report."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class RunFailure(UsageError):
    """The environment failed mid-run (disk full, library or store gone, server down past the
    retry budget): one sentence, exit 74 (EX_IOERR); books already done are kept."""

    exit_code = 74
