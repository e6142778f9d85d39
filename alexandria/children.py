"""Child processes (book workers, the store process): started cheaply, never outliving a killed run.

A run killed with SIGKILL (cron timeout, OOM killer) cannot stop its children, and a pool worker
waiting on its task queue never sees end-of-file (the queue's write end lives in every worker), so
each kill used to leave the workers behind for good. A daemon thread notices the new parent.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from multiprocessing.context import BaseContext

FORKSERVER_PRELOAD = ["alexandria.run.prepare", "alexandria.store.edge"]


def child_context() -> BaseContext:
    """forkserver where there is one (Linux), else spawn; never fork (torch is loaded here).

    spawn forks and execs this process, which holds torch and a CUDA context: on a GPU box that
    took ~0.3 s per child, ~10 s before 30 book workers were up while the GPU waited. A fork
    server is one small process, started once, that forks each child with the imports done.
    A fork server exits when this process dies, and its children (whose parent it is) follow.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(FORKSERVER_PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


def exit_with_parent(interval_s: float = 1.0) -> None:
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="alexandria-orphan-watch", daemon=True).start()
