"""Measured cost of the shipped replication runs: wall time per run from the last `wall_time`
of each metrics.csv, and (given a log of bench/sample_rss.sh) peak resident memory per run.

    python bench/replication_cost.py [RSS_LOG]
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "replication" / "runs"


def main(argv: list[str]) -> None:
    wall: dict[str, list[float]] = defaultdict(list)
    for path in sorted(ROOT.glob("*/*/*/h*/seed*/metrics.csv")):
        rows = list(csv.DictReader(path.open()))
        wall[f"{path.parts[-4]} {path.parts[-3]}"].append(float(rows[-1]["wall_time"]) / 60)
    total = sum(sum(v) for v in wall.values())
    print("| method dir, H | runs | wall time per run (min) |\n|---|---|---|")
    for name, v in sorted(wall.items()):
        print(f"| {name} | {len(v)} | {min(v):.1f}-{max(v):.1f} |")
    print(f"\ntotal: {total / 60:.2f} CPU-hours")
    if argv:
        peak: dict[str, int] = defaultdict(int)
        for line in Path(argv[0]).read_text().splitlines():
            _, _, out, kb = line.split()
            peak[out] = max(peak[out], int(kb))
        by: dict[str, list[float]] = defaultdict(list)
        for out, kb in peak.items():
            parts = out.split("/")
            by[f"{parts[4]} {parts[5]}"].append(kb / 1024)
        print("\n| method dir, H | runs sampled | peak RSS (MB) |\n|---|---|---|")
        for name, v in sorted(by.items()):
            print(f"| {name} | {len(v)} | {min(v):.0f}-{max(v):.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
