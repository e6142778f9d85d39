"""Library paths: ordinary paths pass through, SMB shares map to their mounts via a synthetic mounts file."""

from __future__ import annotations

from pathlib import Path

import pytest

from alexandria.errors import UsageError
from alexandria.sources.paths import is_unc, resolve_library_path

MOUNTS = """\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
/dev/sda1 / ext4 rw,relatime 0 0
//nas/calibre /mnt/calibre cifs ro,relatime,vers=3.1.1,username=me 0 0
//NAS2/Books /mnt/my\\040books smb3 rw,relatime 0 0
//nas/media/ebooks /mnt/ebooks cifs ro,relatime 0 0
//nas/media/ebooks/calibre /mnt/deep cifs ro,relatime 0 0
//nas/media /mnt/media cifs ro,relatime 0 0
nas:/export/calibre /mnt/nfs nfs4 rw,relatime 0 0
//nfsonly/share /mnt/notsmb nfs rw,relatime 0 0
//fusehost/share /mnt/fuse fuse.sshfs rw 0 0
"""


@pytest.fixture
def mounts(tmp_path: Path) -> Path:
    path = tmp_path / "mounts"
    path.write_text(MOUNTS, encoding="utf-8")
    return path


def resolve(value, mounts_file: Path, platform: str = "linux") -> Path:
    return resolve_library_path(value, mounts_file=mounts_file, platform=platform)


@pytest.mark.parametrize(
    "typed",
    ["//nas/calibre", "\\\\nas\\calibre", "//nas\\calibre", "\\\\nas/calibre/", "//nas//calibre/"],
)
def test_share_root_maps_to_mount_point_with_either_slash_style(mounts: Path, typed: str) -> None:
    assert resolve(typed, mounts) == Path("/mnt/calibre")


def test_path_object_input(mounts: Path) -> None:
    assert resolve(Path("//nas/calibre/Author"), mounts) == Path("/mnt/calibre/Author")


@pytest.mark.parametrize("typed", ["//NAS/Calibre", "\\\\Nas\\CALIBRE", "//nas2/books", "//Nas2/BOOKS"])
def test_server_and_share_match_case_insensitively(mounts: Path, typed: str) -> None:
    expected = Path("/mnt/my books") if "2" in typed else Path("/mnt/calibre")
    assert resolve(typed, mounts) == expected


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("//nas/calibre/a/b", "/mnt/calibre/a/b"),
        ("\\\\nas\\calibre\\Jane Austen\\Emma (12)", "/mnt/calibre/Jane Austen/Emma (12)"),
        ("//nas/calibre/Bücher/Straße", "/mnt/calibre/Bücher/Straße"),
        ("//nas/calibre/a/./b/../c", "/mnt/calibre/a/c"),
    ],
)
def test_sub_directories_map_under_the_mount_point(mounts: Path, typed: str, expected: str) -> None:
    assert resolve(typed, mounts) == Path(expected)


def test_sub_directory_case_is_kept_as_typed(mounts: Path) -> None:
    assert resolve("//NAS/CALIBRE/Mixed/Case", mounts) == Path("/mnt/calibre/Mixed/Case")


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("//nas/media/ebooks/calibre/x", "/mnt/deep/x"),  # longest source wins
        ("//nas/media/ebooks/calibre", "/mnt/deep"),
        ("//nas/media/ebooks/other", "/mnt/ebooks/other"),
        ("//nas/media/EBOOKS/other", "/mnt/ebooks/other"),
        ("//nas/media/ebookshelf", "/mnt/media/ebookshelf"),  # component match, not string prefix
        ("//nas/media", "/mnt/media"),
    ],
)
def test_longest_matching_source_wins(mounts: Path, typed: str, expected: str) -> None:
    assert resolve(typed, mounts) == Path(expected)


def test_longest_source_wins_regardless_of_file_order(tmp_path: Path) -> None:
    path = tmp_path / "mounts"
    path.write_text(
        "//srv/share/a /mnt/x cifs rw 0 0\n//srv/share /mnt/calibre cifs rw 0 0\n", encoding="utf-8"
    )
    assert resolve("//srv/share/a/b", path) == Path("/mnt/x/b")
    assert resolve("//srv/share/ab", path) == Path("/mnt/calibre/ab")
    assert resolve("//srv/share", path) == Path("/mnt/calibre")


def test_share_with_only_a_subfolder_mounted_does_not_match(tmp_path: Path) -> None:
    path = tmp_path / "mounts"
    path.write_text("//srv/share/a /mnt/x cifs rw 0 0\n", encoding="utf-8")
    assert resolve("//srv/share/a/b", path) == Path("/mnt/x/b")
    with pytest.raises(UsageError, match="not mounted"):
        resolve("//srv/share", path)
    with pytest.raises(UsageError, match="not mounted"):
        resolve("//srv/share/b", path)


def test_octal_escaped_mount_point_and_source(tmp_path: Path) -> None:
    path = tmp_path / "mounts"
    path.write_text(
        "//nas/my\\040share /mnt/my\\040books cifs rw 0 0\n"
        "//nas/tabs /mnt/a\\011b\\012c\\134d smbfs rw 0 0\n",
        encoding="utf-8",
    )
    assert resolve("//nas/my share/sub dir", path) == Path("/mnt/my books/sub dir")
    assert resolve("//nas/tabs", path) == Path("/mnt/a\tb\nc\\d")


def test_smb3_and_smbfs_types_are_accepted(mounts: Path) -> None:
    assert resolve("//nas2/Books/x", mounts) == Path("/mnt/my books/x")


@pytest.mark.parametrize("typed", ["//nfsonly/share", "//fusehost/share"])
def test_non_smb_entries_are_ignored(mounts: Path, typed: str) -> None:
    with pytest.raises(UsageError, match="not mounted"):
        resolve(typed, mounts)


def test_not_mounted_error_is_one_sentence_with_the_mount_command(mounts: Path) -> None:
    with pytest.raises(UsageError) as info:
        resolve("//server/calibre/sub", mounts)
    message = str(info.value)
    assert message == (
        "The share //server/calibre is not mounted; mount it first, e.g.: "
        "sudo mount -t cifs //server/calibre /mnt/calibre -o ro,username=YOU"
    )
    assert "\n" not in message
    assert info.value.exit_code == 2


def test_not_mounted_error_quotes_a_share_with_a_space(mounts: Path) -> None:
    with pytest.raises(UsageError) as info:
        resolve("\\\\server\\my books", mounts)
    message = str(info.value)
    assert "The share //server/my books is not mounted" in message
    assert "sudo mount -t cifs '//server/my books' '/mnt/my books' -o ro,username=YOU" in message
    assert "\n" not in message


@pytest.mark.parametrize("missing", ["does-not-exist", "a-directory"])
def test_unreadable_mounts_file_gives_the_same_sentence(tmp_path: Path, missing: str) -> None:
    path = tmp_path / missing
    if missing == "a-directory":
        path.mkdir()
    with pytest.raises(UsageError) as info:
        resolve("//nas/calibre", path)
    assert str(info.value) == (
        "The share //nas/calibre is not mounted; mount it first, e.g.: "
        "sudo mount -t cifs //nas/calibre /mnt/calibre -o ro,username=YOU"
    )


def test_macos_error_points_at_connect_to_server(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        resolve("//nas/calibre", tmp_path / "none", platform="darwin")
    message = str(info.value)
    assert message.startswith("The share //nas/calibre is not mounted")
    assert "/Volumes/calibre" in message
    assert "\n" not in message


def test_server_without_share_is_a_usage_error(mounts: Path) -> None:
    with pytest.raises(UsageError, match="no share"):
        resolve("//nas", mounts)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("//server/share/sub/dir", "\\\\server\\share\\sub\\dir"),
        ("\\\\server\\share\\sub", "\\\\server\\share\\sub"),
        ("//server\\share/sub\\dir/", "\\\\server\\share\\sub\\dir"),
        ("\\\\server\\share", "\\\\server\\share\\"),
        ("//server/share/Bücher mit Leerzeichen", "\\\\server\\share\\Bücher mit Leerzeichen"),
    ],
)
def test_windows_returns_the_unc_path(tmp_path: Path, typed: str, expected: str) -> None:
    # No mounts file is consulted on Windows: a missing one must not matter.
    result = resolve_library_path(typed, mounts_file=tmp_path / "none", platform="win32")
    assert str(result) == expected


def test_tilde_is_expanded(mounts: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    assert resolve("~/Calibre Library", mounts) == home / "Calibre Library"
    assert resolve(Path("~"), mounts) == home


@pytest.mark.parametrize(
    "typed",
    [
        "/srv/Calibre Library",
        "relative/library",
        "./library",
        "/home/zoë/Bücher/日本語の本",
        "/mnt/calibre",
        "/single/slash",
        "///triple/slash",
    ],
)
def test_ordinary_paths_pass_through(mounts: Path, typed: str) -> None:
    assert resolve(typed, mounts) == Path(typed)
    assert resolve(typed, mounts, platform="win32") == Path(typed)


def test_ordinary_path_does_not_read_the_mounts_file(tmp_path: Path) -> None:
    assert resolve("/nowhere/Bücher", tmp_path / "missing") == Path("/nowhere/Bücher")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("//server/share", True),
        ("\\\\server\\share\\sub", True),
        ("/\\server/share", True),
        ("//server", True),
        ("/server/share", False),
        ("///server/share", False),
        ("server/share", False),
        ("~/books", False),
        ("C:\\Books", False),
        ("\\\\?\\C:\\Books", False),
        ("\\\\.\\pipe\\x", False),
        ("", False),
        ("//", False),
    ],
)
def test_is_unc(value: str, expected: bool) -> None:
    assert is_unc(value) is expected
