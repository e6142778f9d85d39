"""A store on a read-only mount (a snapshot): search, status, status --verify and plan answer, and
nothing is written to it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, ingest_args, owners, run_cli


def can_bind_mount() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not sys.platform.startswith("linux"):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind /tmp /tmp"],
                           capture_output=True)
    return probe.returncode == 0


def wait_owner_gone(shard: Path, within_s: float = 15.0) -> None:
    """An owner started outside the namespace would serve the writable view: let it leave first."""
    deadline = time.monotonic() + within_s
    while owners(shard):
        if time.monotonic() > deadline:
            pytest.fail(f"the owner of {shard} did not leave")
        time.sleep(0.1)


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow  # an ingest, then four commands in a private mount namespace
def test_a_read_only_store_is_searched_verified_and_planned_and_left_untouched(tmp_path, small_epubs):
    if not can_bind_mount():
        pytest.skip("needs root and a private mount namespace (unshare -m)")
    lib, store = tmp_path / "lib", tmp_path / "store"
    lib.mkdir()
    for src in small_epubs[:2]:
        shutil.copy2(src, lib / src.name)
    proc = run_cli(*ingest_args(store, "--directory", lib))
    assert proc.returncode == 0, proc.stderr[-2000:]
    shard = store / "alexandria_minilm"
    assert shard.is_dir(), list(store.iterdir())
    wait_owner_gone(shard)
    before = tree(store)
    copies = set(Path(tempfile.gettempdir()).glob("alexandria-snapshot-*"))
    common = f"--model minilm --store {store}"
    script = (f"mount --bind {store} {store} && mount -o remount,bind,ro {store}\n"
              "set +e\n"
              f'"$PY" -m alexandria search --json --device cpu {common} water > {tmp_path}/search.json; '
              'echo "search=$?"\n'
              f'"$PY" -m alexandria status --json --verify {common} > {tmp_path}/verify.json; '
              'echo "verify=$?"\n'
              f'"$PY" -m alexandria status {common}; echo "status=$?"\n'
              f'"$PY" -m alexandria plan --json {common} --directory {lib} > {tmp_path}/plan.json; '
              'echo "plan=$?"\n'
              f'touch {store}/probe; echo "touch=$?"\n')
    ns = subprocess.run(["unshare", "-m", "sh", "-ec", script], capture_output=True, text=True,
                        env=dict(os.environ, PY=sys.executable), timeout=600, cwd=REPO)
    out = ns.stdout + ns.stderr
    assert "touch=1" in ns.stdout, out  # the mount really is read-only
    assert "search=0" in ns.stdout and "verify=0" in ns.stdout and "status=0" in ns.stdout, out
    assert "plan=0" in ns.stdout, out
    hits = json.loads((tmp_path / "search.json").read_text())
    assert len(hits) > 0
    verify = json.loads((tmp_path / "verify.json").read_text())
    assert verify["mismatches"] == 0 and verify["totals"]["store_points"] > 0, verify
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["counts"]["unchanged"] == 2, plan  # the manifest was read: both books are done
    assert "read-only" in ns.stderr and "private copy" in ns.stderr, ns.stderr
    wait_owner_gone(shard)
    assert tree(store) == before  # nothing written, not even a WAL or a lock file
    assert set(Path(tempfile.gettempdir()).glob("alexandria-snapshot-*")) == copies  # copy removed
