"""Where the threads of an alexandria command spend their time: a stack sampler in the process.

    python benchmarks/sample_stacks.py [--interval 0.005] [--top 15] [--out FILE] -- bench --corpus ...

Runs the CLI with the given arguments in this process while a thread samples every other thread's
stack (sys._current_frames) and counts, per thread, the innermost frame and the innermost frame in
alexandria, and the chain of alexandria frames above it (which caller a wait belongs to). With --out
the report is also written to FILE every 30 s and at the end, so a run cut off still leaves one.
Works where py-spy cannot attach (containers without ptrace); only this process's
threads are seen, not the worker or store processes.
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--interval", type=float, default=0.005)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", default=None)
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args()
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    leaf: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    ours: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    chain: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    samples: collections.Counter = collections.Counter()
    stop = threading.Event()

    def sample() -> None:
        me = threading.get_ident()
        while not stop.is_set():
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                name = names.get(ident, str(ident))
                samples[name] += 1
                code = frame.f_code
                leaf[name][f"{code.co_filename.rsplit('/', 2)[-1]}:{code.co_name}"] += 1
                f = frame
                while f is not None and "alexandria" not in f.f_code.co_filename:
                    f = f.f_back
                if f is not None:
                    where = f.f_code.co_filename.rsplit("/", 1)[-1]
                    ours[name][f"{where}:{f.f_code.co_name}:{f.f_lineno}"] += 1
                    calls = []
                    while f is not None and len(calls) < 4:
                        if "alexandria" in f.f_code.co_filename:
                            calls.append(f"{f.f_code.co_name}:{f.f_lineno}")
                        f = f.f_back
                    chain[name][" < ".join(calls)] += 1
            if ns.out and time.monotonic() >= next_dump:
                dump()
            time.sleep(ns.interval)

    def report() -> str:
        lines = []
        for name, n in samples.most_common():
            if n < 20:
                continue
            lines.append(f"\n== {name}: {n} samples ({n * ns.interval:.1f}s)")
            for what, counts in (("leaf", leaf), ("ours", ours), ("chain", chain)):
                for label, c in counts[name].most_common(ns.top):
                    lines.append(f"  {what:5} {100 * c / n:5.1f}%  {label}")
        return "\n".join(lines)

    def dump() -> None:
        nonlocal next_dump
        next_dump = time.monotonic() + 30
        with open(ns.out, "w") as f:
            f.write(report() + "\n")

    next_dump = time.monotonic() + 30

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    from alexandria.cli import cli

    try:
        cli(args, standalone_mode=False)
    except SystemExit:
        pass
    finally:
        stop.set()
        sampler.join()
        print(report(), file=sys.stderr)
        if ns.out:
            dump()


if __name__ == "__main__":
    main()
