"""Safe by default: nothing listens beyond loopback without a key."""

from __future__ import annotations

import pytest

from alexandria.errors import UsageError
from alexandria.serve.options import check_bind, is_loopback
from tests.conftest import run_cli


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_needs_no_key(host):
    assert is_loopback(host)
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.org"])
def test_anything_else_needs_a_key(host):
    with pytest.raises(UsageError, match="API key"):
        check_bind(host, None)
    check_bind(host, "a-long-enough-key")


def test_serve_on_every_address_without_a_key_is_refused_in_one_sentence(tmp_path):
    proc = run_cli("serve", "--host", "0.0.0.0", "--model", "minilm", "--device", "cpu",
                   "--store", tmp_path / "store", env={"ALEXANDRIA_SERVE_API_KEY": ""}, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "0.0.0.0" in lines[0] and "--api-key" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "store").exists()  # refused before anything was opened


def test_a_port_in_use_is_one_sentence_before_the_model_loads(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_cli("serve", "--port", str(port), "--model", "minilm", "--device", "cpu",
                       "--store", tmp_path / "store", timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"Error: Port {port} on 127.0.0.1 is already in use; pick another " \
                                  "with --port."
