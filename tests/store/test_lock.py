"""The run lock between real processes: a live holder blocks, a dead one (even SIGKILLed) never does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from alexandria.store.lock import EXIT_LOCKED, LockBusy, RunLock, lock_path, probe

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock semantics are tested on POSIX")


def hold_lock(path: Path, seconds: float) -> subprocess.Popen:
    """A child process that takes the lock, says so on stdout, and sleeps while holding it."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from alexandria.store.lock import RunLock
        with RunLock(Path({str(path)!r})):
            print("locked", flush=True)
            time.sleep({seconds})
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline()
    assert line.strip() == "locked", f"child did not take the lock (rc={proc.poll()})"
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    proc.stdout.close()


def test_second_process_gets_lockbusy_with_holder_pid(tmp_path: Path) -> None:
    path = tmp_path / "store" / "alexandria.lock"
    child = hold_lock(path, 30)
    try:
        with pytest.raises(LockBusy) as info:
            with RunLock(path):
                pytest.fail("acquired a lock another process holds")
        busy = info.value
        assert busy.pid == child.pid
        assert busy.path == path
        assert busy.started and busy.started[:4].isdigit()
        assert busy.exit_code == EXIT_LOCKED == 75
        text = str(busy)
        assert f"PID {child.pid}" in text and str(path) in text and "--wait-lock" in text
        assert "\n" not in text
        holder = probe(path)
        assert holder is not None and holder.pid == child.pid
        assert holder.argv and holder.argv[0] == "-c"
        # The holder's description is plain JSON, readable by anyone who looks.
        on_disk = json.loads(path.read_text())
        assert set(on_disk) == {"pid", "started", "host", "argv"} and on_disk["pid"] == child.pid
    finally:
        stop(child)


def test_wait_acquires_after_holder_exits(tmp_path: Path) -> None:
    path = tmp_path / "alexandria.lock"
    child = hold_lock(path, 1.0)
    try:
        start = time.monotonic()
        with RunLock(path, wait_s=20) as lock:
            waited = time.monotonic() - start
            assert lock.held
            assert json.loads(path.read_text())["pid"] == os.getpid()
        assert 0.3 < waited < 15
        assert child.wait(timeout=10) == 0
        # Released: the file stays (deleting it would race) but is empty and nobody holds it.
        assert path.exists() and path.read_text() == ""
        assert probe(path) is None
    finally:
        stop(child)


def test_wait_gives_up_at_the_deadline(tmp_path: Path) -> None:
    path = tmp_path / "alexandria.lock"
    child = hold_lock(path, 30)
    try:
        start = time.monotonic()
        with pytest.raises(LockBusy) as info:
            RunLock(path, wait_s=0.7).acquire()
        assert 0.6 < time.monotonic() - start < 5
        assert info.value.pid == child.pid
        assert "after waiting" in str(info.value)
    finally:
        stop(child)


def test_sigkilled_holder_leaves_a_file_that_does_not_block(tmp_path: Path) -> None:
    path = tmp_path / "alexandria.lock"
    child = hold_lock(path, 60)
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=10) == -signal.SIGKILL
    child.stdout.close()
    # The dead process's description is still in the file: only the flock decides.
    assert json.loads(path.read_text())["pid"] == child.pid
    assert probe(path) is None
    with RunLock(path) as lock:
        assert lock.held
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_same_process_second_lock_is_busy_and_release_frees_it(tmp_path: Path) -> None:
    path = lock_path(tmp_path / "store")
    assert path == tmp_path / "store" / "alexandria.lock"
    assert probe(path) is None  # no file yet: nothing to report, nothing created
    assert not path.exists()
    with RunLock(path):
        with pytest.raises(LockBusy) as info:
            RunLock(path).acquire()
        assert info.value.pid == os.getpid()
    with RunLock(path):
        pass
