"""A bad environment ends in one sentence and a documented exit code, never a traceback.

Store not writable (a read-only file system, or chmod when not root), the disk filling up (a
real size-limited tmpfs in a private mount namespace), the library vanishing mid-run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alexandria.tools.bench.corpus import copy_epub
from tests.conftest import corpus_book, ingest_args, run_cli, some_books, status_json
from tests.run.test_crash import done_count

EXIT_USAGE, EXIT_IO = 2, 74
REPO = Path(__file__).resolve().parents[2]
COPIES = 20  # distinct copies of a small book in the vanishing-library test


def one_sentence(proc, code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def can_unshare() -> bool:
    """A private mount namespace where tmpfs can be mounted (root or unprivileged user ns)."""
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


def in_namespace(script: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a shell script in a private mount namespace (its mounts vanish with it)."""
    env = dict(os.environ, PY=sys.executable)
    return subprocess.run(["unshare", "-rm", "sh", "-ec", script], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO)


TWO_BOOKS = ["books/idpf-wasteland.epub", "books/idpf-regime-anticancer-arabic.epub"]


@pytest.fixture
def two_books(tmp_path: Path, sample_epubs) -> Path:
    lib = tmp_path / "lib"
    lib.mkdir()
    for src in some_books(TWO_BOOKS, sample_epubs, tmp_path):
        shutil.copy2(src, lib / src.name)
    return lib


def test_store_on_a_read_only_file_system(two_books, tmp_path):
    if not can_unshare():
        pytest.skip("no private mount namespace here")
    ro = tmp_path / "ro"
    ro.mkdir()
    args = " ".join(map(str, ingest_args(ro / "store", "--directory", two_books,
                                         "--log-dir", tmp_path / "logs")))
    proc = in_namespace(f'mount -t tmpfs -o ro,size=1m tmpfs {ro}\nset +e\n'
                        f'"$PY" -m alexandria {args}; echo "rc=$?"')
    assert "rc=2" in proc.stdout, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("Error:"))
    assert str(ro / "store") in line and "not writable" in line, line


def test_store_folder_without_write_permission(two_books, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes through chmod; the read-only file system test covers this")
    store = tmp_path / "store"
    store.mkdir()
    store.chmod(0o500)
    try:
        line = one_sentence(run_cli(*ingest_args(store, "--directory", two_books)), EXIT_USAGE)
        assert str(store) in line and "not writable" in line
    finally:
        store.chmod(0o700)


@pytest.mark.slow
def test_disk_fills_up_during_a_run(two_books, tmp_path, sample_epubs):
    """A real 96 MB tmpfs: one book goes in, then the disk is filled to within 20 MB of full.

    Qdrant Edge writes through memory maps, so a truly full disk is a SIGBUS; the store keeps
    ALEXANDRIA_MIN_FREE_MB in reserve and stops with a sentence before that.
    """
    if not can_unshare():
        pytest.skip("no private mount namespace here (a size-limited tmpfs is needed)")
    disk = tmp_path / "disk"
    disk.mkdir()
    store = disk / "store"
    lib_one, lib_all = tmp_path / "one", two_books
    lib_one.mkdir()
    shutil.copy2(two_books / corpus_book(TWO_BOOKS[0], sample_epubs).name, lib_one)
    common = ["--chunk-tokens", "128", "--overlap", "16", "--log-dir", tmp_path / "logs"]
    first = " ".join(map(str, ingest_args(store, "--directory", lib_one, *common)))
    rest = " ".join(map(str, ingest_args(store, "--directory", lib_all, "--no-prune", *common)))
    status = f"status --json --verify --model minilm --store {store}"
    script = f"""
mount -t tmpfs -o size=96m tmpfs {disk}
export ALEXANDRIA_MIN_FREE_MB=1
"$PY" -m alexandria {first} >/dev/null 2>&1
"$PY" -m alexandria {status} >/dev/null  # the first reopen lays out its segments (~40 MB)
avail=$(df -k --output=avail {disk} | tail -1)
dd if=/dev/zero of={disk}/filler bs=1k count=$((avail - 20000)) 2>/dev/null
set +e
ALEXANDRIA_MIN_FREE_MB=19.2 "$PY" -m alexandria {rest} 2>{tmp_path}/full.err
echo "rc=$?"
rm {disk}/filler
"$PY" -m alexandria {status} > {tmp_path}/after-full.json
"$PY" -m alexandria {rest} >/dev/null 2>&1
echo "rc2=$?"
"$PY" -m alexandria {status} > {tmp_path}/after-space.json
"""
    proc = in_namespace(script)
    err = (tmp_path / "full.err").read_text()
    assert f"rc={EXIT_IO}" in proc.stdout, proc.stdout + proc.stderr + err
    assert "Traceback" not in err
    line = next(ln for ln in err.splitlines() if ln.startswith("Error:"))
    assert "nearly full" in line and str(store) in line, line
    after = json.loads((tmp_path / "after-full.json").read_text())
    assert after["mismatches"] == 0 and after["totals"]["done"] == 1  # the first book is intact
    assert "rc2=0" in proc.stdout, proc.stdout + proc.stderr
    final = json.loads((tmp_path / "after-space.json").read_text())
    assert final["mismatches"] == 0 and final["totals"]["done"] == 2


@pytest.mark.long  # a library big enough to be read ahead of the model
def test_library_vanishes_mid_run(tmp_path, sample_epubs):
    """The share is unmounted while books are still being read: stop, keep what is done."""
    lib = tmp_path / "lib"
    lib.mkdir()
    books = ["edge/idpf-hefty-water.epub", "books/idpf-wasteland.epub",
             "books/idpf-regime-anticancer-arabic.epub", "books/idpf-childrens-literature.epub",
             "books/idpf-israelsailing.epub", "books/idpf-mymedia_lite.epub"]
    for src in some_books(books, sample_epubs, tmp_path):
        shutil.copy2(src, lib / src.name)
    # The run reads ahead of the model (books in the workers, groups queued for the device): enough
    # books that some are still unread when the first one is done.
    for n in range(COPIES):
        copy_epub(corpus_book("books/idpf-wasteland.epub", sample_epubs), lib / f"wasteland-{n}.epub", n)
    store = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-m", "alexandria",
                             *map(str, ingest_args(store, "--directory", lib, "--workers", "1"))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while done_count(store / "manifest.sqlite") < 1 and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("the run finished before the library could be taken away")
    gone = tmp_path / "unmounted"
    lib.rename(gone)  # what an unmounted share looks like to the reader: the files are gone
    lib.mkdir()  # ...and an empty mount point stays behind
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    done = done_count(store / "manifest.sqlite")
    if proc.returncode == 0:
        pytest.skip("every book had been read before the library went away")
    assert proc.returncode == EXIT_IO, (proc.returncode, err)
    assert "Traceback" not in err
    line = next(ln for ln in err.splitlines() if ln.startswith("Error:"))
    assert "disappeared during the run" in line and str(lib) in line, line
    s = status_json(store)
    assert s["mismatches"] == 0 and s["totals"]["failed"] == 0  # no book blamed for it
    assert s["totals"]["done"] == done >= 1

    # The next run with the share still unmounted removes nothing.
    proc2 = run_cli(*ingest_args(store, "--directory", lib))
    line = one_sentence(proc2, EXIT_IO)
    assert "is empty or gone" in line and "nothing was removed" in line
    assert status_json(store)["totals"]["done"] == done

    # Mounted again: the run completes.
    lib.rmdir()
    gone.rename(lib)
    assert run_cli(*ingest_args(store, "--directory", lib)).returncode == 0
    final = status_json(store)
    assert final["mismatches"] == 0 and final["totals"]["done"] == 6 + COPIES
