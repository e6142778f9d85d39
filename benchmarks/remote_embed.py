"""End-to-end tokens/s of `alexandria ingest --embed-url` against the servers' own speed on the
same texts (the same client, batches and concurrency, every text already in memory), over 1 and 2
servers, median of several interleaved repeats; and what faults cost (a server SIGKILLed or frozen
mid-run). docs/performance.md has the numbers.

    python benchmarks/remote_embed.py WORK --books DIR [--copies 2] [--repeats 3] [--faults]
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
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_library(books: Path, work: Path, copies: int) -> Path:
    from alexandria.tools.bench.corpus import copy_epub

    lib = work / "library"
    if lib.exists():
        shutil.rmtree(lib)
    lib.mkdir(parents=True)
    sources = sorted(books.glob("*.epub"))
    for src in sources:
        shutil.copy2(src, lib / src.name)
        for i in range(1, copies):
            copy_epub(src, lib / f"{src.stem} (copy {i}).epub", 3000 + i)
    return lib


def servers_alone(texts: list[str], tokens: int, urls: list[str]) -> float:
    from alexandria.embedding.models import resolve_model
    from alexandria.embedding.remote import connect

    remote = connect(resolve_model("minilm"), urls)
    try:
        remote.encode_texts(texts[:64])  # warm: connections
        started = time.perf_counter()
        remote.encode_texts(texts)
        return tokens / (time.perf_counter() - started)
    finally:
        remote.close()


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


def speeds(lib: Path, work: Path, urls: list[str], repeats: int) -> dict:
    from alexandria.embedding.models import resolve_model
    from alexandria.tools.tune_remote import sample_texts

    texts, tokens = sample_texts(lib, resolve_model("minilm"), 10**12)
    rows: dict[int, dict[str, list[float]]] = {n: {"servers": [], "e2e": [], "embedding": [],
                                                   "startup_s": []} for n in (1, 2)}
    for r in range(repeats):
        for n in ((1, 2) if r % 2 == 0 else (2, 1)):  # interleaved: drift hits both alike
            alone = servers_alone(texts, tokens, urls[:n])
            report, rc = ingest(lib, work / f"store-{n}" / "store", urls[:n])
            assert rc == 0, f"ingest exited {rc}"
            rows[n]["servers"].append(alone)
            rows[n]["e2e"].append(report["tokens"] / report["elapsed_s"])
            # from the first batch given to the servers to the last vectors back: the run's own
            # start-up (imports, the tokenizer, the plan) left out
            rows[n]["embedding"].append(report["tokens"] / report["stages_s"]["embed"])
            rows[n]["startup_s"].append(report["stages_s"]["startup"])
            print(f"repeat {r + 1}, {n} server(s): servers alone {alone:,.0f} tokens/s, "
                  f"end to end {rows[n]['e2e'][-1]:,.0f} tokens/s", flush=True)
    out = {"tokens": tokens, "texts": len(texts)}
    for n, row in rows.items():
        s, e = statistics.median(row["servers"]), statistics.median(row["e2e"])
        m = statistics.median(row["embedding"])
        out[f"{n}_servers"] = {"servers_alone_tokens_per_s": round(s), "end_to_end_tokens_per_s": round(e),
                               "ratio": round(e / s, 3), "while_embedding_tokens_per_s": round(m),
                               "ratio_while_embedding": round(m / s, 3),
                               "startup_s": statistics.median(row["startup_s"]), "runs": row}
    out["scaling_end_to_end"] = round(out["2_servers"]["end_to_end_tokens_per_s"]
                                      / out["1_servers"]["end_to_end_tokens_per_s"], 3)
    out["scaling_servers_alone"] = round(out["2_servers"]["servers_alone_tokens_per_s"]
                                         / out["1_servers"]["servers_alone_tokens_per_s"], 3)
    return out


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
    ap.add_argument("--copies", type=int, default=1, help="copies of each book in the library")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--embed-url", action="append", default=[])
    ap.add_argument("--faults", action="store_true", help="also time a killed and a frozen server")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    lib = make_library(a.books, a.work, a.copies)
    servers = []
    urls = a.embed_url
    if not urls:
        from tests.infinity import Infinity, start_all

        servers = start_all([Infinity(a.work / "logs", name="a"), Infinity(a.work / "logs", name="b")])
        urls = [s.url for s in servers]
    try:
        out = speeds(lib, a.work, urls, a.repeats)
        if a.faults and servers:
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
