"""`alexandria doctor`: everything a run depends on, checked up front and reported in one table.

Every check is read-only (apart from a temporary file to prove the store folder is writable) and
never raises: a check that blows up becomes a "fail" row, so one broken piece never hides the others.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alexandria.tools.doctor.environment import check_cuda, check_packages, check_python
from alexandria.tools.doctor.files import check_disk, check_library, check_lock, check_manifest
from alexandria.tools.doctor.model_store import Context
from alexandria.tools.doctor.report import STATUSES, Check, guarded, one_line, scrub

if TYPE_CHECKING:
    from alexandria.store.location import Location


def location_for(model: str, **where: Any) -> Location:
    """The Location the checks run on. A model name Alexandria refuses (no such folder, not a hub
    id) still gets one, so that its row fails and the other checks run."""
    from alexandria.embedding.models import ModelSpec
    from alexandria.errors import UsageError
    from alexandria.store.location import Location

    try:
        return Location.of(model, **where)
    except UsageError:
        return Location.of(ModelSpec(model, model), **where)


def run_checks(where: Location, device: str = "auto", directory: Path | None = None,
               load_model: bool = True) -> list[Check]:
    """All checks in the order a run meets them; load_model=False skips the seconds-long load."""
    try:
        from alexandria.embedding.embedder import quiet_libraries

        quiet_libraries()  # before transformers is imported, or its loading bars land in cron mail
    except Exception:  # a broken install shows up in the package rows below
        pass
    ctx = Context(where, device=device, load_model=load_model)
    store, api_key = where.store, where.api_key
    checks: list[Check] = []
    sections: list[tuple[str, Callable[[], list[Check]]]] = [
        ("python", check_python),
        ("packages", lambda: check_packages(import_heavy=load_model)),
        ("cuda", lambda: check_cuda(device)),
        ("model", ctx.model_checks),
        ("store", ctx.store_checks),
        ("library", lambda: check_library(Path(directory).expanduser()) if directory else []),
        ("manifest", lambda: check_manifest(ctx)),
        ("disk", lambda: check_disk(store)),
        ("lock", lambda: check_lock(where.lock)),
    ]
    for name, section in sections:
        checks.extend(guarded(name, section))
    return [scrub(c, api_key) for c in checks]


def render_table(checks: list[Check]) -> str:
    """Aligned columns and one summary line: readable in a terminal, in cron mail and in grep."""
    rows = [("CHECK", "STATUS", "DETAIL")] + [(c.name, c.status, one_line(c.detail)) for c in checks]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows]
    lines.insert(1, f"{'-' * w0}  {'-' * w1}  {'-' * 6}")
    lines.append("")
    lines.append(summary(checks))
    return "\n".join(lines)


def summary(checks: list[Check]) -> str:
    counts = {s: sum(c.status == s for c in checks) for s in STATUSES}
    return (f"{counts['ok']} ok, {counts['warn']} warnings, {counts['fail']} failures, "
            f"{counts['info']} notes")


def exit_code(checks: list[Check]) -> int:
    """1 when anything failed, so `alexandria doctor && alexandria ingest` stops on a broken setup."""
    return 1 if any(c.status == "fail" for c in checks) else 0


__all__ = ["Check", "exit_code", "location_for", "render_table", "run_checks", "summary"]
