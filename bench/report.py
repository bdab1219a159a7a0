"""Shared helper: replace one ``## Section`` of BENCHMARKS.md, keeping the others."""
from __future__ import annotations

import re
from pathlib import Path

HEADER = "# Benchmarks\n\nFigures measured by the scripts in `bench/`; each section names its command.\n"


def update_section(path: Path, title: str, body: str) -> None:
    text = path.read_text() if path.exists() else HEADER
    block = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: block + "\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + block
    path.write_text(text)
