#!/usr/bin/env python3
"""Draws bench/chart.svg from bench/run.sh's measurements: first load of one
day, wall time and peak RSS against rows, one line per tool (log-log).

Usage: chart.py RESULTS.jsonl OUT.svg   (matplotlib, in the bench venv)
"""
import json
import os
import sys

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt

results_path, out_path = sys.argv[1], sys.argv[2]
sizes = {
    "first_load_small": int(os.environ.get("BENCH_SMALL_ROWS", "100000")),
    "first_load": int(os.environ.get("BENCH_ROWS", "1000000")),
    "first_load_big": int(os.environ.get("BENCH_BIG_ROWS", "5000000")),
}
runs = {}
with open(results_path) as results:
    for line in results:
        r = json.loads(line) if line.strip() else {}
        if r.get("scenario") in sizes and "seconds" in r and r.get("exit") == 0:
            runs.setdefault((r["tool"], r["scenario"]), []).append(r)

LABELS = {"shoplake": "shoplake", "python": "Python deltalake 1.6.6", "spark": "Spark 3.5 + Delta 3.3 local[2]"}
STYLE = {"shoplake": "o-", "python": "s--", "spark": "^-."}
plt.rcParams["svg.hashsalt"] = "shoplake-bench"  # stable ids: the SVG changes only when figures do
plt.rcParams["svg.fonttype"] = "none"  # text stays text (smaller, searchable)
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
for tool in ("shoplake", "python", "spark"):
    points = []
    for scenario, n in sizes.items():
        rows = runs.get((tool, scenario))
        if rows:
            seconds = sorted(r["seconds"] for r in rows)[len(rows) // 2]
            points.append((n, seconds, max(r["peak_rss_mb"] for r in rows)))
    if not points:
        continue
    points.sort()
    xs = [p[0] for p in points]
    left.plot(xs, [p[1] for p in points], STYLE[tool], label=LABELS[tool])
    right.plot(xs, [p[2] / 1024 for p in points], STYLE[tool], label=LABELS[tool])
for ax, title, unit in ((left, "first load of a day: wall time", "seconds (start-up included)"),
                        (right, "first load of a day: peak RSS", "GB (whole process tree)")):
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows in the export")
    ax.set_ylabel(unit)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
left.legend()
fig.tight_layout()
fig.savefig(out_path, format="svg", metadata={"Date": None})
