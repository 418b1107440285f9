#!/usr/bin/env python3
"""Renders bench/RESULTS.md from the measurements of bench/run.sh."""
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone

results_path, rows, size_mb = sys.argv[1], int(sys.argv[2]), sys.argv[3]
results = [json.loads(line) for line in open(results_path) if line.strip()]
runs, new_versions = {}, {}
for r in results:
    if "new_versions" in r:  # a check, not a timed run
        new_versions[(r["tool"], r["scenario"])] = r["new_versions"]
        continue
    runs.setdefault((r["tool"], r["scenario"]), []).append(r)

def median(rows):
    ordered = sorted(rows, key=lambda r: r["seconds"])
    row = dict(ordered[len(ordered) // 2])
    row["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rows)
    row["exit"] = max(r["exit"] for r in rows)
    row["runs"] = len(rows)
    row["all"] = [r["seconds"] for r in rows]
    return row

by = {key: median(rows) for key, rows in runs.items()}

def cell(r):
    if r is None:
        return "-"
    flag = "" if r["exit"] == 0 else f" (exit {r['exit']})"
    spread = "" if r["runs"] == 1 else f" ({min(r['all']):.2f}–{max(r['all']):.2f})"
    return f"{r['seconds']:.2f} s{spread} / {r['peak_rss_mb']:.0f} MB{flag}"

def ratio(a, b):
    if a is None or b is None or b["seconds"] == 0:
        return "-"
    return f"{a['seconds'] / b['seconds']:.2f}x"

goals = {
    "first_load": ("<= 2.3 s", lambda r: r["seconds"] <= 2.3),
    "identical_rerun": (
        "<= 1.5 s, no new version",
        lambda r: r["seconds"] <= 1.5 and new_versions.get(("shoplake", "identical_rerun")) == 0,
    ),
    "new_day": ("(3.1 s baseline)", None),
    "corrected_1pct": ("<= 4 s and <= 1.5 GB", lambda r: r["seconds"] <= 4 and r["peak_rss_mb"] <= 1536),
    "first_load_5m": ("peak RSS <= 2 GB", lambda r: r["peak_rss_mb"] <= 2048),
}

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:
        return "?"

out = []
out.append("# shoplake benchmark results\n")
out.append(f"Measured by `make bench` on {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}. "
           f"Main export: {rows:,} shops ({size_mb} MB CSV), one partition. Each figure is the median "
           "wall time of the runs (their range in brackets) / the highest peak RSS of the process. "
           f"Versions the identical re-runs added: {new_versions.get(('shoplake', 'identical_rerun'), '?')}.\n")
out.append("| scenario | shoplake | Python deltalake 1.6.6 | shoplake / baseline | goal | met |")
out.append("| --- | --- | --- | --- | --- | --- |")
for name in ["first_load", "identical_rerun", "new_day", "corrected_1pct", "first_load_5m"]:
    s, p = by.get(("shoplake", name)), by.get(("python", name))
    goal, check = goals[name]
    met = "-" if check is None or s is None else ("yes" if s["exit"] == 0 and check(s) else "NO")
    out.append(f"| {name} | {cell(s)} | {cell(p)} | {ratio(s, p)} | {goal} | {met} |")

one, thirty = by.get(("shoplake", "reload_in_1_date")), by.get(("shoplake", "reload_in_30_dates"))
if one and thirty:
    slower = thirty["seconds"] / one["seconds"] - 1 if one["seconds"] else 0
    met = "yes" if slower <= 0.2 else "NO"
    out.append("")
    out.append("Re-loading one date (1% corrected) costs the same whatever the table holds:\n")
    out.append("| table | shoplake | difference | goal | met |")
    out.append("| --- | --- | --- | --- | --- |")
    out.append(f"| 1 date | {cell(one)} | | | |")
    out.append(f"| 30 dates | {cell(thirty)} | {slower:+.0%} | within 20% | {met} |")

out.append("\n## Commands\n")
out.append("```")
for (tool, scenario), r in by.items():
    out.append(f"# {tool} {scenario}\n{r['command']}")
out.append("```")
out.append("\n## Machine\n")
mem_gib = int(open("/proc/meminfo").readline().split()[1]) / 1048576
cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2")
out.append(f"- {platform.platform()}, {os.cpu_count()} cores, {mem_gib:.0f} GiB")
out.append(f"- CPU: {cpu}")
out.append(f"- {sh('rustc --version')}; shoplake built with the dev profile (dependencies at opt-level 2)")
out.append(f"- Python baseline: {sh(sys.executable + ' --version')}, deltalake 1.6.6 in a venv")
print("\n".join(out))
