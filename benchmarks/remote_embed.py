"""What faults cost `alexandria ingest --embed-url`: a server SIGKILLed or frozen (SIGSTOP) in the
middle of a two-server run, the time until the run takes it out and the run's total; before that,
the end-to-end speed against the servers alone over 1 and 2 servers, which is `alexandria bench
--embed-url`'s own measurement (alexandria.tools.bench.remote). docs/performance.md has the numbers.

    python benchmarks/remote_embed.py WORK --books DIR [--tokens N] [--repeats 3] [--faults]
    python benchmarks/remote_embed.py WORK --books DIR --embed-url URL1 --embed-url URL2

Without --embed-url it starts two real infinity servers (minilm, CPU) from .venv-infinity; on a
small machine they share its cores with each other and with the run (say so next to the numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def ingest(lib: Path, store: Path, urls: list[str], *more: str, on_line=None) -> tuple[dict, int]:
    if store.parent.exists():
        shutil.rmtree(store.parent)
    store.parent.mkdir(parents=True)
    report = store.parent / "report.json"
    args = [sys.executable, "-m", "alexandria", "ingest", "--model", "minilm", "--directory", str(lib),
            "--store", str(store), "--log-dir", str(store.parent / "logs"), "--report", str(report),
            "--embed-url", ",".join(urls), *more]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.stderr is not None
    for line in proc.stderr:
        if on_line:
            on_line(time.perf_counter(), line)
    rc = proc.wait()
    return (json.loads(report.read_text()) if report.is_file() else {}), rc


def fault(lib: Path, work: Path, servers: list, how: str, timeout_s: float, batch: int) -> dict:
    """Run on both servers; after the second has answered a few batches, SIGKILL it (or SIGSTOP
    it: a hung box); time until the run takes it out, and the run's total."""
    victim = servers[1]
    marks: dict[str, float] = {}
    finished = threading.Event()

    def on_line(t: float, line: str) -> None:
        if "taken out" in line and "out" not in marks:
            marks["out"] = t

    def killer() -> None:
        before = victim.answered()
        while victim.answered() < before + 4:
            if finished.wait(0.02):
                return
        marks["fault"] = time.perf_counter()
        os.killpg(victim.proc.pid, signal.SIGKILL if how == "kill" else signal.SIGSTOP)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    report, rc = ingest(lib, work / f"store-{how}" / "store", [s.url for s in servers],
                        "--embed-timeout", str(timeout_s), "--embed-batch", str(batch),
                        on_line=on_line)
    finished.set()
    if how == "freeze":
        os.killpg(victim.proc.pid, signal.SIGCONT)
    victim.restart()
    return {"how": how, "exit": rc, "embed_timeout_s": timeout_s, "embed_batch": batch,
            "faulted": "fault" in marks,
            "taken_out_after_s": round(marks["out"] - marks["fault"], 2) if "out" in marks else None,
            "run_s": report.get("elapsed_s"), "tokens_per_s": report.get("tokens_per_s"),
            "endpoints": report.get("endpoints")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", type=Path)
    ap.add_argument("--books", type=Path, required=True, help="a folder of EPUBs")
    ap.add_argument("--tokens", type=int, default=1,
                    help="tokens a run at least (the books are copied until they hold as many)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--embed-url", action="append", default=[])
    ap.add_argument("--faults", action="store_true", help="also time a killed and a frozen server")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    from alexandria.tools.bench.corpus import corpus_books, make_copies
    from alexandria.tools.bench.remote import run_remote_bench

    a.work.mkdir(parents=True, exist_ok=True)
    servers = []
    urls = a.embed_url
    if not urls:
        from tests.infinity import Infinity, start_all

        servers = start_all([Infinity(a.work / "logs", name="a"), Infinity(a.work / "logs", name="b")])
        urls = [s.url for s in servers]
    try:
        out = run_remote_bench(a.books, "minilm", urls, tokens=a.tokens, repeats=a.repeats,
                               workdir=a.work / "bench", progress=print)
        if a.faults and servers:
            lib = make_copies(corpus_books(a.books), 1, a.work / "library")
            # batches of 8 and a 30 s timeout: a loaded 2-core box answers a batch of 32 in 10-40 s
            out["faults"] = [fault(lib, a.work, servers, "kill", 30.0, 8),
                             fault(lib, a.work, servers, "freeze", 30.0, 8)]
    finally:
        for s in servers:
            s.kill()
    where = "two infinity servers (minilm, CPU) on this machine" if servers else ", ".join(urls)
    out["machine"] = f"{os.cpu_count()} cores (shared with the servers), no GPU; {where}"
    print(json.dumps(out, indent=2))
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
