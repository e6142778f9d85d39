"""One owner process per embedded shard: every client shares it, races start one, its death or a
client's leaves nothing behind, and only its own user may connect."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from alexandria.store.base import PointData
from alexandria.store.edge import EdgeStore
from alexandria.store.owner import GRACE_S
from alexandria.store.process import StoreProcess, connect
from tests.conftest import REPO
from tests.store.test_store_process import gone, points

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets")


def test_a_reader_and_a_writer_share_one_owner_and_the_reader_sees_what_is_stored(tmp_path):
    writer = StoreProcess(tmp_path, "c", 4)
    try:
        writer.upsert(points("a", 30))
        writer.flush()
        reader = StoreProcess(tmp_path, "c", None)  # dimension unknown: opens the existing one
        try:
            assert reader.owner_pid == writer.owner_pid
            assert reader.count() == 30
            writer.upsert(points("b", 5))
            writer.flush()
            assert reader.counts_by_book() == {"a": 30, "b": 5}
            assert reader.search([1.0, 6.0, 0.5, 0.0], 1)[0].payload["chunk_index"] == 6
        finally:
            reader.close()
        writer.upsert(points("c", 2))  # the writer goes on after the reader left
        writer.flush()
        assert writer.count() == 37
    finally:
        writer.close()


def test_searches_on_many_threads_while_blocks_are_written_all_answer(tmp_path):
    writer = StoreProcess(tmp_path, "c", 4)
    errors: list[BaseException] = []
    answered = []
    stop = threading.Event()

    def search() -> None:
        store = StoreProcess(tmp_path, "c", None)
        try:
            while not stop.is_set():
                answered.append(len(store.search([1.0, 2.0, 0.5, 0.0], 3)))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            store.close()

    threads = [threading.Thread(target=search) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        for b in range(40):
            writer.upsert(points(f"book{b}", 50))
        writer.flush()
        assert writer.count() == 2000
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        writer.close()
    assert not errors, errors
    assert len(answered) >= 3


def test_clients_racing_to_start_the_owner_all_reach_the_same_one(tmp_path):
    EdgeStore(tmp_path, "c", 4).close()
    code = ("import sys; from pathlib import Path; from alexandria.store.process import StoreProcess\n"
            "s = StoreProcess(Path(sys.argv[1]), 'c', None); print(s.owner_pid, s.count()); "
            "sys.stdout.flush(); import time; time.sleep(0.5); s.close()")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(6)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    owners = {o[0].split()[0] for o in outs}
    assert len(owners) == 1, outs
    assert gone(int(owners.pop()), GRACE_S + 10)


def test_the_owner_leaves_a_short_grace_after_its_last_client_and_a_new_one_comes_on_demand(tmp_path):
    store = StoreProcess(tmp_path, "c", 4)
    store.upsert(points("a", 3))
    store.flush()
    first = store.owner_pid
    store.close()
    left = time.monotonic()
    assert gone(first, GRACE_S + 5)
    assert time.monotonic() - left < GRACE_S + 5
    again = StoreProcess(tmp_path, "c", None)
    try:
        assert again.owner_pid != first
        assert again.count() == 3
    finally:
        again.close()


def test_an_owner_killed_mid_query_leaves_no_claim_and_the_next_client_works(tmp_path):
    store = StoreProcess(tmp_path, "c", 4)
    for b in range(20):
        store.upsert(points(f"b{b}", 200))
    store.flush()
    reader = StoreProcess(tmp_path, "c", None)
    failures = []

    def query() -> None:
        try:
            while True:
                reader.search([1.0, 2.0, 0.5, 0.0], 10)
        except Exception as e:  # noqa: BLE001 - the kill ends it
            failures.append(e)

    t = threading.Thread(target=query)
    t.start()
    time.sleep(0.3)
    os.kill(store.owner_pid, signal.SIGKILL)
    t.join(30)
    assert failures and "died or closed the connection" in str(failures[0])
    reader.close()
    store.close()
    again = StoreProcess(tmp_path, "c", 4)
    try:
        assert again.owner_pid != store.owner_pid
        assert again.count() == 4000  # flushed before the kill
        again.upsert(points("new", 5))
        again.flush()
        assert again.count_book("new") == 5
    finally:
        again.close()


def test_the_writes_a_killed_client_left_queued_are_dropped_not_applied_later(tmp_path):
    """A killed run's unanswered upserts must not land after the next run deleted its book."""
    code = ("import os, sys; from pathlib import Path; from alexandria.store.process import StoreProcess\n"
            "from tests.store.test_store_process import points\n"
            "s = StoreProcess(Path(sys.argv[1]), 'c', 4)\n"
            "for i in range(3): s.upsert(points('k', 2000))\n"
            "os.kill(os.getpid(), 9)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, timeout=120,
                          capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    store = StoreProcess(tmp_path, "c", 4)
    try:
        store.delete_book("k")  # the next run's recovery
        store.flush()
        time.sleep(0.5)
        assert store.count_book("k") == 0
    finally:
        store.close()


def test_another_user_is_refused_with_a_sentence(tmp_path):
    if os.getuid() != 0:
        pytest.skip("needs root to run a client as another user")
    store = StoreProcess(tmp_path, "c", 4)
    try:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # a client as user nobody
            try:
                os.setuid(65534)
                connect(store.path, None)
                os.write(write, b"served")
            except BaseException as e:  # noqa: BLE001 - the parent checks it
                os.write(write, f"refused: {e}".encode())
            finally:
                os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        answer = os.read(read, 4096).decode()
        os.close(read)
        assert answer.startswith("refused"), answer
        assert "another user's process" in answer
        assert store.count() == 0  # the owner serves its own user on
    finally:
        store.close()


def test_point_data_crosses_the_socket_unchanged(tmp_path):
    store = StoreProcess(tmp_path, "c", 4)
    try:
        p = PointData("00000000-0000-5000-8000-000000000001", [0.1, 0.2, 0.3, 0.4],
                      {"book_key": "é/日", "n": [1, 2]})
        store.upsert([p])
        store.flush()
        assert store.get([p.id]) == {p.id: p.payload}
    finally:
        store.close()


def test_the_last_clients_close_closes_the_shard_before_it_returns(tmp_path):
    """A command that returned has its shard closed (files settled, loadable elsewhere at once);
    the owner, still there for its grace, reopens the shard for the next client."""
    import qdrant_edge

    store = StoreProcess(tmp_path, "c", 4)
    store.upsert(points("a", 3))
    store.flush()
    pid = store.owner_pid
    store.close()
    shard = qdrant_edge.EdgeShard.load(str(tmp_path / "c"), None)  # no WouldBlock, no waiting
    shard.close()
    os.kill(pid, 0)  # the owner is still there
    again = StoreProcess(tmp_path, "c", None)
    try:
        assert again.owner_pid == pid
        assert again.count() == 3
    finally:
        again.close()
