"""Shared helpers of the benchmarks: replace one ``## Section`` of BENCHMARKS.md, keeping the
others; run stages from one shared warm-up checkpoint."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
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


def run_from_warmup(cmd: list, out: Path, warm: Path, step: int, cwd: Path) -> list:
    """Run ``cmd`` (a ``ddpinn run`` writing to ``out``) and return its metrics rows. The
    first such run keeps its checkpoint at ``step`` (the end of a shared warm-up) as
    ``warm``; later runs start from a copy of it with ``--resume auto`` (the same bits as
    training the warm-up again). ``cmd`` None: only read the rows of a finished run."""
    if cmd is not None:
        if warm.exists():
            (out / "checkpoints").mkdir(parents=True)
            shutil.copy(warm, out / "checkpoints" / f"ckpt_{step:08d}.pt")
            cmd = cmd + ["--resume", "auto"]
        subprocess.run(cmd, check=True, cwd=cwd)
        if not warm.exists():
            shutil.copy(out / "checkpoints" / f"ckpt_{step:08d}.pt", warm)
    return [json.loads(line) for line in open(out / "metrics.jsonl") if line.strip()]
