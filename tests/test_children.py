"""Real processes killed with SIGKILL: nothing they started outlives them by more than a few seconds."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import EPUBS, REPO, ingest_args, need_corpus
from tests.run.test_crash import CRASH_BOOKS, alive, children

GONE_WITHIN_S = 5.0

# A run in miniature: a pool of the fork server's children whose fork server is started by a thread
# that ends at once (as a run's alexandria-prepare-start does), one worker stuck in a C call that
# never lets go of the GIL (no thread of it can run), and a store-like child stuck mid-call.
PARENT = r'''
import json, os, signal, sys, threading, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import forkserver
from alexandria.children import child_context, exit_with_parent

OUT = sys.argv[2]


def busy():
    open(os.path.join(OUT, "busy"), "w").close()
    sum(range(10 ** 14))


def store_like(conn):
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    exit_with_parent()
    threading.Event().wait()  # stuck in a call: it never reads the pipe again, so never sees its end


def on_a_thread(fn):
    out = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join()
    return out[0]


if __name__ == "__main__":
    ctx = child_context()
    pool = ProcessPoolExecutor(2, mp_context=ctx, initializer=exit_with_parent)
    first = on_a_thread(lambda: pool.submit(os.getpid).result())
    mine, theirs = ctx.Pipe()
    store = ctx.Process(target=store_like, args=(theirs,), daemon=True)
    on_a_thread(store.start)
    pids = {"first": first, "store": store.pid, "forkserver": forkserver._forkserver._forkserver_pid}
    if sys.argv[1] == "kill":
        pool.submit(busy)
        while not os.path.exists(os.path.join(OUT, "busy")):
            time.sleep(0.01)
    else:
        time.sleep(2.5)  # past the threads' end and any watcher's first look
        pids["again"] = sorted({pool.submit(os.getpid).result() for _ in range(3)})  # one at a time
        pids["store_alive"] = store.is_alive()
        store.kill()
        store.join()
        pool.shutdown()
    with open(os.path.join(OUT, "pids.json.part"), "w") as f:
        json.dump(pids, f)
    os.replace(os.path.join(OUT, "pids.json.part"), os.path.join(OUT, "pids.json"))
    time.sleep(600 if sys.argv[1] == "kill" else 0)
'''


def start_parent(tmp_path: Path, mode: str) -> tuple[subprocess.Popen, dict]:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    out = tmp_path / "out"
    out.mkdir()
    with (tmp_path / "parent.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, str(script), mode, str(out)], cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not (out / "pids.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"the parent did not get ready:\n{(tmp_path / 'parent.log').read_text()}")
        time.sleep(0.05)
    return proc, json.loads((out / "pids.json").read_text())


def kill_and_wait(proc: subprocess.Popen, kids: list[int]) -> tuple[list[str], float]:
    """SIGKILL proc and wait, GONE_WITHIN_S at most, for the kids to be gone: those still alive
    (pid and command line) and the seconds waited."""
    proc.kill()  # SIGKILL, unless it has ended already
    proc.wait()
    killed = time.monotonic()
    while any(alive(k) for k in kids) and time.monotonic() - killed < GONE_WITHIN_S:
        time.sleep(0.02)
    took = time.monotonic() - killed
    left = [k for k in kids if alive(k)]
    described = describe(left)
    for k in left:  # leave no litter on the machine either way
        with contextlib.suppress(OSError):
            os.kill(k, signal.SIGKILL)
    return described, took


def describe(pids: list[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            out.append(f"{pid}: {args[:120]!r}")
        except OSError:
            out.append(f"{pid}: gone")
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_every_child_of_a_killed_parent_is_gone_within_seconds(tmp_path):
    proc, pids = start_parent(tmp_path, "kill")
    kids = children(proc.pid)
    left, took = kill_and_wait(proc, kids)
    assert {pids["first"], pids["store"], pids["forkserver"]} <= set(kids), (pids, describe(kids))
    assert len(kids) >= 4, describe(kids)  # resource tracker, fork server, a worker or two, store
    assert left == [], f"alive {GONE_WITHIN_S} s after the kill: {left}"
    assert took < GONE_WITHIN_S


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_children_live_on_while_their_parent_does_after_the_thread_that_started_them_ended(tmp_path):
    proc, pids = start_parent(tmp_path, "live")
    assert proc.wait(timeout=60) == 0, (tmp_path / "parent.log").read_text()
    assert pids["again"] == [pids["first"]], "the first worker died while the parent lived"
    assert pids["store_alive"], "the store-like child died while the parent lived"


def test_a_run_outlives_the_shell_that_started_it(tmp_path):
    """A dry run calls init_worker in the run itself: that must not tie the run to its parent."""
    started, done = tmp_path / "started", tmp_path / "done"
    code = ("import time; from alexandria.children import exit_with_parent; exit_with_parent(0.05); "
            f"open({str(started)!r}, 'w').close(); time.sleep(1); open({str(done)!r}, 'w').close()")
    # The shell leaves once the python is past exit_with_parent: the python gets a new parent.
    shell = '"$0" -c "$1" > /dev/null 2>&1 & while [ ! -e "$2" ]; do sleep 0.05; done'
    subprocess.run(["sh", "-c", shell, sys.executable, code, str(started)], cwd=REPO, check=True,
                   timeout=60)
    deadline = time.monotonic() + 30
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert done.exists()


def owner_of(kids: list[int]) -> int | None:
    """The store's owner process (alexandria.store.owner): the run started it, in a session of its
    own; it leaves a short grace after its last client, so it too is gone within seconds."""
    for pid in kids:
        try:
            if b"alexandria.store.owner" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            pass
    return None


def forkserver_of(kids: list[int]) -> int | None:
    for pid in kids:
        try:
            if b"multiprocessing.forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            pass
    return None


@pytest.mark.slow  # ~14 s on 2 cores: the model loads and the store opens before the kill
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_nothing_of_an_ingest_killed_with_its_workers_up_outlives_it_by_seconds(tmp_path):
    need_corpus()
    lib = tmp_path / "lib"
    lib.mkdir()
    for rel in CRASH_BOOKS:
        shutil.copy2(EPUBS / rel, lib / Path(rel).name)
    store = tmp_path / "store"
    err = tmp_path / "stderr.txt"
    with err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "alexandria", *map(str, ingest_args(store, "--directory", lib))],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr)
    kids: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            kids = children(proc.pid)
            server = forkserver_of(kids)
            if server is not None and children(server) and owner_of(kids):  # a book worker, the store
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the run ended (or hung) before it could be killed:\n{err.read_text()[-2000:]}")
        kids = children(proc.pid)  # the fork server and its children, the resource tracker, the
        assert children(server) and owner_of(kids), describe(kids)  # store's owner (detached)
    finally:
        left, took = kill_and_wait(proc, kids)
    assert left == [], f"alive {GONE_WITHIN_S} s after the kill: {left}"
    assert took < GONE_WITHIN_S
