#!/usr/bin/env python3
"""What users run over SSH and from cron: `python scripts/ingest_books.py --directory ... --device cuda`.

Same options as `alexandria ingest`; works from a checkout even before `pip install -e .`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alexandria.cli import script_main  # noqa: E402

if __name__ == "__main__":
    script_main()
