"""Turn what the user typed for a library folder into a local folder, mapping SMB shares to their mounts.

Users often keep the Calibre library on a NAS and type `--directory //server/calibre` (or the Windows
form `\\\\server\\calibre`). On Windows that is a path the OS reads directly; elsewhere the share has to be
mounted, so the UNC path is mapped through the CIFS/SMB entries of /proc/mounts to the local mount point.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

from alexandria.errors import UsageError

__all__ = ["is_unc", "resolve_library_path"]

SMB_FSTYPES = frozenset({"cifs", "smb3", "smbfs"})

# Two separators of either kind, then a server name (not a third separator).
_UNC_RE = re.compile(r"^[/\\]{2}([^/\\]+)")
_OCTAL_RE = re.compile(rb"\\([0-7]{3})")


@dataclass(frozen=True)
class _Unc:
    server: str
    share: str
    sub: tuple[str, ...]

    @property
    def display(self) -> str:
        return f"//{self.server}/{self.share}"


@dataclass(frozen=True)
class _Mount:
    source: tuple[str, ...]  # casefolded (server, share, *subdirs) of the mounted source
    mountpoint: Path


def is_unc(value: str | os.PathLike[str]) -> bool:
    """True when `value` is a UNC path: `//server/...` or `\\\\server\\...` (either slash, or mixed).

    Windows device and extended-length prefixes (`\\\\?\\`, `\\\\.\\`) are not UNC shares.
    """
    text = os.fspath(value)
    match = _UNC_RE.match(text) if isinstance(text, str) else None
    return match is not None and match.group(1) not in ("?", ".")


def resolve_library_path(
    value: str | Path,
    *,
    mounts_file: Path = Path("/proc/mounts"),
    platform: str = sys.platform,
) -> Path:
    """What the user typed -> a local folder to read.

    Ordinary paths come back as a Path with `~` expanded (existence is the caller's business). A UNC path
    comes back as a Windows UNC path on win32, and elsewhere as the matching folder under the mount point
    of a CIFS/SMB mount listed in `mounts_file`; raises UsageError when the share is not mounted.
    """
    text = os.fspath(value)
    if not is_unc(text):
        return Path(text).expanduser()

    unc = _parse_unc(text)
    if platform == "win32":
        return Path(str(PureWindowsPath(f"\\\\{unc.server}\\{unc.share}\\", *unc.sub)))

    wanted = tuple(part.casefold() for part in (unc.server, unc.share, *unc.sub))
    best: _Mount | None = None
    for mount in _read_smb_mounts(mounts_file):
        matches = wanted[: len(mount.source)] == mount.source
        if matches and (best is None or len(mount.source) > len(best.source)):
            best = mount
    if best is None:
        raise UsageError(_not_mounted(unc, platform))
    rest = unc.sub[len(best.source) - 2 :]
    return best.mountpoint.joinpath(*rest)


def _split(text: str) -> list[str]:
    """Path components of either slash style, without empty and `.` components."""
    return [part for part in re.split(r"[/\\]+", text) if part and part != "."]


def _parse_unc(text: str) -> _Unc:
    parts = _split(text)
    if len(parts) < 2:
        shown = "//" + "/".join(parts)
        raise UsageError(f"The path {shown} names a server but no share; give it as //server/share.")
    server, share, *rest = parts
    if ".." in (server, share):
        raise UsageError(f"The path {text} is not a valid //server/share path.")
    sub: list[str] = []
    for part in rest:
        if part == "..":
            if sub:
                sub.pop()
        else:
            sub.append(part)
    return _Unc(server, share, tuple(sub))


def _unescape(field: bytes) -> str:
    """A /proc/mounts field with its octal escapes (`\\040` space, `\\011`, `\\012`, `\\134`) decoded."""
    return os.fsdecode(_OCTAL_RE.sub(lambda m: bytes([int(m.group(1), 8) & 0xFF]), field))


def _read_smb_mounts(mounts_file: Path) -> list[_Mount]:
    """The CIFS/SMB entries of a /proc/mounts-style file, in file order; none when it cannot be read."""
    try:
        data = Path(mounts_file).read_bytes()
    except (OSError, ValueError):
        return []
    mounts = []
    for line in data.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        fstype = _unescape(fields[2]).lower()
        if fstype not in SMB_FSTYPES:
            continue
        source = _unescape(fields[0])
        if not _UNC_RE.match(source):
            continue
        parts = _split(source)
        if len(parts) < 2 or ".." in parts:
            continue
        mounts.append(_Mount(tuple(part.casefold() for part in parts), Path(_unescape(fields[1]))))
    return mounts


def _not_mounted(unc: _Unc, platform: str) -> str:
    share = unc.display
    if platform == "darwin":
        return (
            f"The share {share} is not mounted; mount it first (Finder > Go > Connect to Server, "
            f"smb://{unc.server}/{unc.share}) and give its folder instead, e.g. /Volumes/{unc.share}"
        )
    mountpoint = f"/mnt/{unc.share}"
    command = f"sudo mount -t cifs {shlex.quote(share)} {shlex.quote(mountpoint)} -o ro,username=YOU"
    return f"The share {share} is not mounted; mount it first, e.g.: {command}"
