"""Child processes (book workers, the store process) must not outlive a killed run.

A run killed with SIGKILL (cron timeout, OOM killer) cannot stop its children, and a pool worker
waiting on its task queue never sees end-of-file (the queue's write end lives in every worker), so
each kill used to leave the workers behind for good. A daemon thread notices the new parent.
"""

from __future__ import annotations

import os
import threading
import time


def exit_with_parent(interval_s: float = 1.0) -> None:
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="alexandria-orphan-watch", daemon=True).start()
