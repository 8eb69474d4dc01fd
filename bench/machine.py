"""The machine a benchmark ran on, for its results file (run the benches as
`python bench/<name>.py`, which puts this folder on the import path)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def machine() -> dict[str, str]:
    """uname, CPU model, logical cores and Python version."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    uname = subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout.strip()
    return {
        "uname": uname or " ".join(platform.uname()),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
    }
