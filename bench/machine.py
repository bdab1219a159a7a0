"""Shared helpers of the performance benchmarks: device choice, machine notes, command line."""
from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import torch


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> None:
    """Exit with one clear message when ``--device cuda`` is asked for without a GPU."""
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no GPU is visible (torch.cuda.is_available() is False); "
                 "use --device cpu")


def synchronize(device: str) -> None:
    """Wait for queued GPU kernels, so that wall-clock timings cover them."""
    if device == "cuda":
        torch.cuda.synchronize()


def load_average() -> str:
    path = Path("/proc/loadavg")
    return " ".join(path.read_text().split()[:3]) if path.exists() else "n/a"


def machine_note(device: str) -> str:
    """One line naming the hardware the figures were measured on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = platform.processor() or platform.machine()
    model = Path("/proc/cpuinfo")
    if model.exists():
        names = [ln.split(":", 1)[1].strip() for ln in model.read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    note = f"{cpu}, {cores} cores visible; torch {torch.__version__}"
    if device == "cuda":
        note += f"; GPU {torch.cuda.get_device_name()}"
    return note


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return f"load average {load_average()}"


def command_line(script: str, argv=None, env_keys=()) -> str:
    """The command that reproduces this run (environment variables that matter first)."""
    args = argv if argv is not None else sys.argv[1:]
    env = "".join(f"{k}={os.environ[k]} " for k in env_keys if k in os.environ)
    return env + f"python {script}" + "".join(f" {shlex.quote(a)}" for a in args)
