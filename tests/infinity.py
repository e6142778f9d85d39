"""Real infinity-emb servers on loopback, from their own virtual environment (.venv-infinity, made
by .ci/run: infinity pins older sentence-transformers and numpy than Alexandria). Used by the
remote-embedding tests and benchmarks/remote_embed.py."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("ALEXANDRIA_INFINITY_VENV", REPO / ".venv-infinity"))
CLI = VENV / "bin" / "infinity_emb"
START_S = 240.0  # loading torch and the model on two shared cores takes 25-90 s


def have_infinity() -> bool:
    return CLI.is_file()


def need_infinity() -> None:
    if not have_infinity():
        pytest.skip(f"no infinity-emb at {CLI} (.ci/run makes that virtual environment)")


def minilm_folder() -> str:
    from alexandria.embedding.models import resolve_model

    return resolve_model("minilm").source


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Infinity:
    """One infinity_emb v2 process serving a model folder on 127.0.0.1 (OpenAI route /embeddings)."""

    def __init__(self, log_dir: Path, model: str | None = None, api_key: str | None = None,
                 name: str = "infinity") -> None:
        self.model = model or minilm_folder()
        self.api_key, self.name = api_key, name
        self.port = free_port()
        self.log = Path(log_dir) / f"{name}-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/embeddings"

    def start(self) -> Infinity:
        args = [str(CLI), "v2", "--model-id", self.model, "--engine", "torch", "--device", "cpu",
                "--host", "127.0.0.1", "--port", str(self.port), "--no-model-warmup"]
        if self.api_key:
            args += ["--api-key", self.api_key]
        env = dict(os.environ, HF_HUB_OFFLINE="1", INFINITY_ANONYMOUS_USAGE_STATS="0",
                   DO_NOT_TRACK="1", OMP_NUM_THREADS="1")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        return self

    def wait_ready(self, timeout: float = START_S) -> Infinity:
        deadline = time.monotonic() + timeout
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: "
                                   + self.log.read_text()[-2000:])
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} did not start within {timeout:.0f} s: "
                           + self.log.read_text()[-2000:])

    def answered(self) -> int:
        """Embedding requests answered so far (uvicorn's access log, one line per answer)."""
        if not self.log.is_file():
            return 0
        return self.log.read_text(errors="replace").count('/embeddings HTTP/1.1" 200')

    def kill(self) -> None:
        """SIGKILL, as a crashed GPU box: no goodbye to its clients."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def restart(self) -> Infinity:
        self.kill()
        return self.start().wait_ready()


def start_all(servers: list[Infinity]) -> list[Infinity]:
    for s in servers:
        s.start()
    try:
        for s in servers:
            s.wait_ready()
    except BaseException:
        for s in servers:
            s.kill()
        raise
    return servers
