#!/usr/bin/env python3
"""Draws bench/chart.svg from bench/run.sh's measurements: wall time (top row)
and peak RSS (bottom row) against rows, one column per scenario (first load,
identical re-run, corrected re-export), one line per tool, log-log. A run
killed by the memory guard or the time limit is drawn as an open marker at
the figures it had reached.

Usage: chart.py RESULTS.jsonl OUT.svg   (matplotlib, in the bench venv)
"""
import json
import os
import sys

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

results_path, out_path = sys.argv[1], sys.argv[2]
pins = dict(p.split("==") for p in os.environ.get("BENCH_PIP_SPEC", "").split() if "==" in p)
SCENARIOS = [("first_load", "first load of a day"), ("identical_rerun", "identical re-run"),
             ("corrected_1pct", "corrected re-export, 1%")]
LABELS = {"shoplake": "shoplake", "python": f"Python deltalake {pins.get('deltalake', '')}".strip(),
          "polars": f"Polars {pins.get('polars', '')}".strip(), "floe": f"floe {pins.get('floe-python', '')}".strip(),
          "spark": "Spark 3.5 + Delta 3.3 local[2]"}
STYLE = {"shoplake": ("o", "-", "C0"), "python": ("s", "--", "C1"), "polars": ("D", "-.", "C2"),
         "floe": ("v", ":", "C3"), "spark": ("^", "-.", "C4")}

runs = {}
with open(results_path) as results:
    for line in results:
        r = json.loads(line) if line.strip() else {}
        if "seconds" in r and r.get("tool") in STYLE and (r["exit"] == 0 or r.get("killed")):
            runs.setdefault((r["tool"], r["scenario"], int(r["rows"])), []).append(r)
scenarios = [(s, t) for s, t in SCENARIOS if any(k[1] == s for k in runs)] or SCENARIOS[:1]



def rows_label(n, _pos=None):
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if n >= size:
            return f"{n / size:g}{unit}"
    return f"{n:g}"


plt.rcParams["svg.hashsalt"] = "shoplake-bench"  # stable ids: the SVG changes only when figures do
plt.rcParams["svg.fonttype"] = "none"  # text stays text (smaller, searchable)
fig, axes = plt.subplots(2, len(scenarios), figsize=(5 * len(scenarios), 8), squeeze=False)
for col, (scenario, title) in enumerate(scenarios):
    top, bottom = axes[0][col], axes[1][col]
    for tool, (marker, line, color) in STYLE.items():
        points = []
        for (t, s, n), rows in runs.items():
            if t == tool and s == scenario:
                seconds = sorted(r["seconds"] for r in rows)[len(rows) // 2]
                killed = any(r.get("killed") for r in rows)
                points.append((n, seconds, max(r["peak_rss_mb"] for r in rows) / 1024, killed))
        if not points:
            continue
        points.sort()
        xs = [p[0] for p in points]
        for ax, i in ((top, 1), (bottom, 2)):
            ax.plot(xs, [p[i] for p in points], linestyle=line, marker=marker, color=color, label=LABELS[tool])
            for p in points:
                if p[3]:
                    ax.plot([p[0]], [p[i]], marker=marker, markersize=12, markerfacecolor="none", color=color)
    top.set_title(f"{title}: wall time")
    bottom.set_title(f"{title}: peak RSS")
    top.set_ylabel("seconds (start-up included)")
    bottom.set_ylabel("GB (whole process tree)")
    sizes = sorted({k[2] for k in runs if k[1] == scenario})
    for ax in (top, bottom):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows in the export")
        if sizes:
            ax.set_xticks(sizes)
        ax.xaxis.set_major_formatter(FuncFormatter(rows_label))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="major", alpha=0.3)
axes[0][0].legend(fontsize="small")
fig.tight_layout()
fig.savefig(out_path, format="svg", metadata={"Date": None})
