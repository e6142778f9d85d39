"""A thin click layer over the Python API: options, environment, exit codes, human output.

One module per family of commands; importing them registers their commands on the group.
"""

from __future__ import annotations

from alexandria.cli import (  # noqa: F401 (registers)
    query_commands,
    run_commands,
    serve_commands,
    tool_commands,
)
from alexandria.cli.common import cli, load_env, log
from alexandria.cli.output import setup_logging
from alexandria.cli.run_commands import ingest_script, script_main

__all__ = ["cli", "ingest_script", "log", "main", "script_main", "setup_logging"]


def main() -> None:
    load_env()
    cli(prog_name="alexandria")
