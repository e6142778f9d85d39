"""Child processes (book workers, the store process): started cheaply, never outliving a killed run.

A run killed with SIGKILL (cron timeout, OOM killer) cannot stop its children. Its children are
forked by the fork server, which exits when its "alive" pipe reaches end-of-file; but every child
is handed a copy of that pipe's write end, so the fork server waited for its workers, and the
workers (a pool's task queue never sees end-of-file: its write end lives in every worker) waited for
the fork server: a killed run left both behind for good.

So each child, first thing (exit_with_parent):
- asks the kernel for SIGKILL when its parent, the fork server, dies (PR_SET_PDEATHSIG). The fork
  server forks on its main thread, which lasts as long as it does, so that signal means the fork
  server is gone; and it needs no GIL: a worker stuck in C code dies too;
- closes its copy of the alive pipe: the run then holds the only one, so the run's death, however it
  comes, ends the fork server, and the kernel kills every child after it. The resource tracker, the
  run's other child, leaves once they all have closed its pipe.
The fork server itself gets no PR_SET_PDEATHSIG: the kernel sends it when the thread that started
the process ends, and a run starts its fork server on a short-lived thread.
Where there is no such signal (macOS, Windows), a daemon thread notices a new parent or the run gone.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from multiprocessing import forkserver
from multiprocessing.context import BaseContext

FORKSERVER_PRELOAD = ["alexandria.run.prepare", "alexandria.store.edge"]
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def child_context() -> BaseContext:
    """forkserver where there is one (Linux), else spawn; never fork (torch is loaded here).

    spawn forks and execs this process, which holds torch and a CUDA context, so a GPU box's
    dozens of book workers came up slowly while the GPU waited. A fork server is one small
    process, started once, that forks each child with the imports done.
    Its children call exit_with_parent: the fork server then exits when this process dies, and
    they are killed after it.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(FORKSERVER_PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


def exit_with_parent(interval_s: float = 1.0) -> None:
    """Ties this child's life to the run's; call it first thing, on the main thread (the kernel
    keeps a death signal per thread, and forgets it when that thread ends).

    A no-op in the run itself: a dry run and the tools prepare books in-process, and a run may
    rightly outlive the shell that started it (nohup).
    """
    if multiprocessing.parent_process() is None:
        return
    if forkserver.get_inherited_fds() is not None and _leave_fork_server_pipe():
        return
    _poll_parent(interval_s)


def _leave_fork_server_pipe() -> bool:
    """In a child of the fork server: asks for SIGKILL when the fork server dies (Linux), then
    drops this child's copy of the alive pipe; True if the kernel will kill this child."""
    server = forkserver._forkserver
    alive = getattr(server, "_forkserver_alive_fd", None)
    if alive is None:  # a Python whose fork server works otherwise: polling only
        return False
    killed = sys.platform.startswith("linux") and _parent_death_signal(signal.SIGKILL)
    if killed and _reader_gone(alive):  # the fork server died before the signal was asked for
        os._exit(1)
    os.close(alive)
    server._forkserver_alive_fd = None  # a process this child starts gets a fork server of its own
    return killed


def _parent_death_signal(sig: int) -> bool:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _reader_gone(fd: int) -> bool:
    """A pipe's write end: True once no process holds its read end (the kernel reports POLLERR)."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def _poll_parent(interval_s: float) -> None:
    """A daemon thread that exits the process when its parent changes or the run is gone (a fork
    server's child watches both: its parent is the fork server)."""
    parent = os.getppid()
    run = multiprocessing.parent_process().pid

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent or (os.name == "posix" and not _exists(run)):
                os._exit(1)

    threading.Thread(target=watch, name="alexandria-orphan-watch", daemon=True).start()


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: it exists
        return True
    return True
