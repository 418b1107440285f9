#!/usr/bin/env python3
"""Renders bench/RESULTS.md from the measurements of bench/run.sh.

Usage: report.py RESULTS.jsonl > RESULTS.md
(the settings of the run come from the environment run.sh exports:
SHOPLAKE_BIN, BENCH_SIZES, BENCH_MERGE_MAX_ROWS, BENCH_DAY_ROWS,
BENCH_YEAR_DATES, BENCH_YEAR_ROWS, BENCH_YEAR_PARALLEL, BENCH_S3_ROWS,
BENCH_MEM_LIMIT_MB, BENCH_PIP_SPEC, BENCH_LOAD_START, BENCH_BIN_MTIME, and
BENCH_CALLER_SETTINGS: the BENCH_* variables the caller set)
"""
import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

env = os.environ.get
binary = env("SHOPLAKE_BIN", "?")
day_rows = int(env("BENCH_DAY_ROWS", "100000"))
year_rows, year_dates = int(env("BENCH_YEAR_ROWS", "100000")), int(env("BENCH_YEAR_DATES", "365"))
s3_rows = int(env("BENCH_S3_ROWS", "1000000"))
mem_limit = env("BENCH_MEM_LIMIT_MB", "?")
pins = dict(p.split("==") for p in env("BENCH_PIP_SPEC", "").split() if "==" in p)

TOOLS = ["shoplake", "python", "polars", "floe", "spark", "floe_state"]
NAMES = {
    "shoplake": "shoplake",
    "python": f"Python deltalake {pins.get('deltalake', '?')}",
    "polars": f"Polars {pins.get('polars', '?')}",
    "floe": f"floe {pins.get('floe-python', '?')}",
    "spark": "Spark 3.5.7 + Delta 3.3.2",
    "floe_state": f"floe {pins.get('floe-python', '?')}, file state",
}
SHORT = {"python": "Python", "polars": "Polars", "floe": "floe", "spark": "Spark", "floe_state": "floe (state)"}
SIZE_SCENARIOS = [
    ("first_load", "First load of a day"),
    ("identical_rerun", "Identical re-run of the day"),
    ("corrected_1pct", "Corrected re-export of the day, 1% of lines changed"),
    ("new_day", "A new day into a table of one day"),
]


def read(path):
    with open(path) as f:
        return f.read()


results = [json.loads(line) for line in read(sys.argv[1]).splitlines() if line.strip()]
runs, facts, skips = {}, [], []
for r in results:
    if "skipped" in r:
        skips.append(r)
    elif "kind" in r:
        facts.append(r)
    else:
        runs.setdefault((r["tool"], r["scenario"], int(r["rows"])), []).append(r)


def median(rows):
    ordered = sorted(rows, key=lambda r: r["seconds"])
    row = dict(ordered[len(ordered) // 2])
    row["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rows)
    failed = [r for r in rows if r["exit"] != 0]
    if failed:  # a failed run stands for the scenario
        row = dict(failed[0])
    row["runs"] = len(rows)
    row["all"] = [r["seconds"] for r in rows]
    return row


by = {key: median(rows) for key, rows in runs.items()}
tools_seen = [t for t in TOOLS if any(k[0] == t for k in by)]


def get(tool, scenario, rows):
    return by.get((tool, scenario, rows))


def fact(kind, **match):
    for f in facts:
        if f.get("kind") == kind and all(str(f.get(k)) == str(v) for k, v in match.items()):
            return f
    return None


footnotes = []


def footnote(text):
    if text not in footnotes:
        footnotes.append(text)
    return f"[^{footnotes.index(text) + 1}]"


def skip_reason(tool, scenario, rows):
    for s in skips:
        if s["skipped"] != tool:
            continue
        if "scenario" not in s:
            return s["reason"]
        if scenario in s["scenario"].split() and ("rows" not in s or int(s["rows"]) == rows):
            return s["reason"]
    return None


def cell(r, tool=None, scenario=None, rows=None):
    if r is None:
        reason = skip_reason(tool, scenario, rows) if tool else None
        return f"not run{footnote(reason)}" if reason else "-"
    if r.get("killed") == "memory":
        return f"killed: over {mem_limit} MB after {r['seconds']:.1f} s"
    if r.get("killed") == "timeout":
        return f"killed: over {r['seconds']:.0f} s"
    if r["exit"] != 0:
        return f"failed (exit {r['exit']}) after {r['seconds']:.2f} s"
    spread = "" if r["runs"] == 1 else f" ({min(r['all']):.2f}–{max(r['all']):.2f})"
    return f"{r['seconds']:.2f} s{spread} / {r['peak_rss_mb']:.0f} MB"


def times(peer, ours):
    """(peer time / shoplake time, is_lower_bound); None when there is nothing to compare."""
    if peer is None or ours is None or ours["exit"] or not ours["seconds"]:
        return None
    if peer.get("killed"):
        return peer["seconds"] / ours["seconds"], True
    if peer["exit"]:
        return None
    return peer["seconds"] / ours["seconds"], False


def fmt_x(x):
    return f"{x:.1f}x" if x >= 10 else f"{x:.2f}x"


def ratio(peer, ours):
    t = times(peer, ours)
    if t is None:
        return "-"
    x, bound = t
    if bound:
        return f"> {fmt_x(x)}"
    mem = peer["peak_rss_mb"] / ours["peak_rss_mb"] if ours["peak_rss_mb"] else 0
    return f"{fmt_x(x)} ({fmt_x(mem)})"


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, check=False).stdout.strip()
    except (OSError, ValueError):
        return "?"


def sizes_of(scenario):
    return sorted({k[2] for k in by if k[1] == scenario})


def size_label(n):
    f = fact("size", rows=n)
    return f"{n:,} ({f['mb']} MB)" if f else f"{n:,}"


def table(rows_spec, tools, label_header):
    """rows_spec: [(label, scenario, rows)]; one column per tool, then peer/shoplake ratios."""
    peers = [t for t in tools if t != "shoplake"]
    head = [label_header] + [NAMES[t] for t in tools] + [f"{SHORT[t]} / shoplake" for t in peers]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for label, scenario, n in rows_spec:
        ours = get("shoplake", scenario, n)
        cells = [cell(get(t, scenario, n), t, scenario, n) for t in tools]
        ratios = [ratio(get(t, scenario, n), ours) for t in peers]
        lines.append("| " + " | ".join([label] + cells + ratios) + " |")
    return lines


profile = "release" if "/release/" in binary else "dev (debug)" if "/debug/" in binary else "?"
# The BENCH_* settings the caller chose: a run with any is not plain `make bench`.
caller = [name for name in env("BENCH_CALLER_SETTINGS", "").split() if name not in ("BENCH_OUT",)]
measured_by = "`bench/run.sh` with the settings under Commands" if caller else "`make bench`"
out = ["# shoplake benchmark results\n"]
out.append(
    f"Measured by {measured_by} on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, binary `{binary}` "
    f"({profile} profile); every tool on the same generated files in this one run. Each figure is the median "
    "wall time of the runs (their range in brackets), start-up included (Python interpreter, JVM and Spark "
    "session: what a scheduler pays), / the highest peak RSS of the whole process tree (sampled every 50 ms; "
    "Spark's work is in the JVM pyspark starts). **Ratios are peer / shoplake**: how many times longer the peer "
    "took, and in brackets how many times more memory it used (`> x`: the peer was killed, by the memory guard "
    f"of {mem_limit} MB or the time limit, so its time is a lower bound).\n"
)
end_load = " ".join(read("/proc/loadavg").split()[:3])
out.append(f"Load average (1, 5, 15 min) at the start: {env('BENCH_LOAD_START', '?')}, at the end: {end_load} "
           f"({os.cpu_count()} cores).\n")
try:
    if env("BENCH_BIN_MTIME") and int(os.stat(binary).st_mtime) != int(env("BENCH_BIN_MTIME")):
        changed = datetime.fromtimestamp(os.stat(binary).st_mtime, UTC).strftime("%H:%M UTC")
        out.append(f"**The binary was rebuilt during the run (now dated {changed}): later scenarios may have "
                   "measured the newer build.**\n")
except OSError:
    pass
for s in skips:
    if "scenario" not in s:
        out.append(f"**{NAMES.get(s['skipped'], s['skipped'])} was not measured: {s['reason']}.**\n")

# ---------------------------------------------------------------- per size
size_tools = [t for t in tools_seen if t != "floe_state"]
if any(sizes_of(s) for s, _ in SIZE_SCENARIOS):
    out.append("## By size of the day's export\n")
    for scenario, title in SIZE_SCENARIOS:
        sizes = sizes_of(scenario)
        if not sizes:
            continue
        out.append(f"### {title}\n")
        out += table([(size_label(n), scenario, n) for n in sizes], size_tools, "rows (CSV)")
        out.append("")
    out.append("![wall time and peak RSS against rows, per tool and scenario](chart.svg)\n")
    lines = []
    for n in sizes_of("identical_rerun"):
        parts = []
        for t in size_tools:
            f = fact("versions", tool=t, scenario="identical_rerun", rows=n)
            if f:
                parts.append(f"{SHORT.get(t, t)} {f['new_versions']}")
        if parts:
            lines.append(f"{n:,} rows: " + ", ".join(parts))
    if lines:
        why = []
        if {"polars", "floe"} & set(size_tools):
            why.append("Polars' merge and floe's merge_scd1 update every matched row, so each of their re-runs is "
                       "a version that rewrites the day")
        if {"python", "spark"} & set(size_tools):
            why.append("Python's and Spark's MERGE update no row when none differs, but Delta still commits a "
                       "version when the merge touched files")
        out.append("Versions the identical re-runs added (over all their runs): " + "; ".join(lines) + ". "
                   + "; ".join(why) + (".\n" if why else "\n"))
    shares = []
    for n in sizes_of("identical_rerun"):
        a, b = get("shoplake", "first_load", n), get("shoplake", "identical_rerun", n)
        if a and b and not a["exit"] and not b["exit"] and a["seconds"]:
            shares.append(f"{n:,} rows {b['seconds'] / a['seconds']:.2f}x")
    if shares:
        out.append("shoplake's identical re-run against its first load (time): " + ", ".join(shares) + ".\n")
    # What each tool kept of the day (from its own report): the loads are comparable.
    kept = {"shoplake": "rows_valid", "python": "rows", "polars": "rows", "floe": "accepted_total"}
    lines = []
    for n in sizes_of("first_load"):
        parts = []
        for t in size_tools:
            r = get(t, "first_load", n)
            value = (r or {}).get("report", {}).get(kept.get(t, ""))
            if value is not None:
                parts.append(f"{SHORT.get(t, t)} {int(value):,}")
        if parts:
            lines.append(f"{n:,}: " + ", ".join(parts))
    if lines:
        out.append("Rows each first load kept, by the tool's own count (Python keeps every line; shoplake, "
                   "Polars and Spark filter lines without application_id, floe rejects them; Spark prints no "
                   "count): " + "; ".join(lines) + ".\n")

# ---------------------------------------------------------------- month
if any(k[1] == "new_day_30" for k in by):
    out.append(f"## A new day ({day_rows:,} rows) into a table of 30 dates\n")
    out += table([("new day", "new_day_30", day_rows)], size_tools, "scenario")
    out.append("")
one, thirty = get("shoplake", "reload_in_1_date", day_rows), get("shoplake", "reload_in_30_dates", day_rows)
if one and thirty and not one["exit"] and not thirty["exit"]:
    slower = thirty["seconds"] / one["seconds"] - 1 if one["seconds"] else 0
    out.append(f"Re-loading one date ({day_rows:,} rows, 1% corrected) costs the same whatever the table holds:\n")
    out.append("| table | shoplake | difference | goal | met |")
    out.append("| --- | --- | --- | --- | --- |")
    out.append(f"| 1 date | {cell(one)} | | | |")
    out.append(f"| 30 dates | {cell(thirty)} | {slower:+.0%} | within 20% | {'yes' if slower <= 0.2 else 'NO'} |\n")

# ---------------------------------------------------------------- year
year_tools = [t for t in TOOLS if any(k[0] == t and k[1].startswith("year_") for k in by)]
if year_tools:
    ys = fact("year_size")
    mb = f", {ys['mb']} MB of CSV" if ys else ""
    out.append(f"## A year: {year_dates} dates of {year_rows:,} rows{mb}\n")
    out.append("Each tool loads the dates one after the other in one process (shoplake: `backfill "
               f"--parallel {env('BENCH_YEAR_PARALLEL', '1')}`; Python, Polars, floe: one interpreter looping "
               "over the files; Spark: `legacy_job.py backfill`, one session), then the same again with every "
               "export unchanged (the re-run). Peers re-run a date the way they load one: Python's MERGE with "
               "the date as a literal in its condition (it reads only that date's files), Polars' merge, "
               "floe's merge_scd1, Spark's MERGE. `floe, file state` is floe with `incremental_mode: file`, "
               "its own way to skip a file it loaded before: by the file's name alone (a corrected re-export "
               "under the same name is skipped too).\n")
    out += table([("load of the year", "year_load", year_rows), ("identical re-run of the year", "year_rerun",
                                                                 year_rows)], year_tools, "scenario")
    parts = []
    for t in year_tools:
        f = fact("versions", tool=t, scenario="year_rerun")
        if f:
            parts.append(f"{SHORT.get(t, t)} {f['new_versions']}")
    if parts:
        out.append("\nVersions the re-run of the year added: " + ", ".join(parts) + ".\n")
    else:
        out.append("")

# ---------------------------------------------------------------- s3
s3_tools = [t for t in TOOLS if any(k[0] == t and k[1].startswith("s3_") for k in by)]
if s3_tools or skip_reason("shoplake", "s3_identical_rerun", s3_rows):
    out.append(f"## Identical re-run with the export on S3 (MinIO), {s3_rows:,} rows\n")
    out.append("The export and the table on a local MinIO (`localstack/services.sh start minio`). The re-run "
               "is timed against MinIO directly, then run once more through a counting proxy "
               "(`bench/s3proxy.py`) that adds up what crossed the wire. Target: no download of the export.\n")
    out.append("| tool | first load | identical re-run | downloaded in the counted re-run | of it, the export "
               "| requests |")
    out.append("| --- | --- | --- | --- | --- | --- |")
    for t in s3_tools:
        b = fact("s3_bytes", tool=t)
        down = f"{int(b['bytes_down']):,} B" if b else "-"
        export = f"{int(b['export_get_bytes']):,} B in {b['export_gets']} GET" if b else "-"
        reqs = ", ".join(f"{k} {v}" for k, v in sorted(b["requests"].items())) if b else "-"
        out.append(f"| {NAMES[t]} | {cell(get(t, 's3_first_load', s3_rows))} | "
                   f"{cell(get(t, 's3_identical_rerun', s3_rows), t, 's3_identical_rerun', s3_rows)} | "
                   f"{down} | {export} | {reqs} |")
    if not s3_tools:
        out.append(f"| shoplake | - | {cell(None, 'shoplake', 's3_identical_rerun', s3_rows)} | - | - | - |")
    out.append("")


# ---------------------------------------------------------------- shopify
shopify_rows = sizes_of("products_quoted") or sizes_of("bulk_jsonl")
if shopify_rows:
    n = shopify_rows[0]
    out.append(f"## Shopify's own export shapes (issue #28), ~{n:,} records\n")
    out.append("shoplake alone, against itself on the same data: the Products admin export (a product's "
               "variants as 1-3 records, its fields on the first) framed with `records = \"quoted\"` against "
               "`records = \"lines\"` on a file without line breaks (quoting is what may span lines); a "
               "first load of a product-a-line JSONL export against the CSV one of the same rows and "
               "columns. Time / peak RSS:\n")
    files = {f["file"]: f for f in facts if f.get("kind") == "shopify_file"}
    out.append("| comparison | file | baseline | measured | ratio | goal | met |")
    out.append("| --- | --- | --- | --- | --- | --- | --- |")
    for label, base, measured, name, limit in (
        ("Products, quoted / lines", "products_lines", "products_quoted", "products_export_2019-04-01.csv", 1.3),
        ("first load, JSONL / CSV", "bulk_csv", "bulk_jsonl", "bulk_products_2019-04-01.jsonl", 1.5),
    ):
        b, m = get("shoplake", base, n), get("shoplake", measured, n)
        f = files.get(name)
        size = f"{int(f['lines']):,} lines, {int(f['mb']):,} MB" if f else "-"
        ok = bool(b and m and b["exit"] == 0 and m["exit"] == 0)
        x = m["seconds"] / b["seconds"] if ok else None
        out.append(f"| {label} | {size} | {cell(b)} | {cell(m)} | {fmt_x(x) if x else '-'} | ≤ {limit}x "
                   f"| {('yes' if x <= limit else '**no**') if x else '-'} |")
    out.append("")


# ---------------------------------------------------------------- memory
memory_rows = sizes_of("memory_first_load")
if memory_rows:
    out.append("## Memory at any day size: shoplake at `--memory-limit 1GiB`\n")
    out.append("The key indexes claim their memory from the limit's pool, up to 3/8 of it each, and go to disk "
               "past it (issue #26: a 50M-row day loads and re-loads in at most 1.5 GB). Time / peak RSS:\n")
    out.append("| rows | export | first load | corrected re-export, 1% |")
    out.append("| --- | --- | --- | --- |")
    for n in memory_rows:
        size = fact("size", rows=n)
        mb = f"{int(size['mb']):,} MB" if size else "-"
        out.append(f"| {n:,} | {mb} | {cell(get('shoplake', 'memory_first_load', n))} | "
                   f"{cell(get('shoplake', 'memory_corrected_1pct', n), 'shoplake', 'memory_corrected_1pct', n)} |")
    out.append("")


# ---------------------------------------------------------------- targets
def goal(text, value, met):
    return f"| {text} | {value} | {'-' if met is None else 'yes' if met else 'NO'} |"


def against_peers(scenario, n, share=0.5, only=None):
    """shoplake's time / each peer's (or only those named), and whether every one is ≤ share."""
    ours = get("shoplake", scenario, n)
    shown, ok = [], True
    for t in size_tools:
        if t == "shoplake" or (only is not None and t not in only):
            continue
        x = times(get(t, scenario, n), ours)
        if x is None:
            continue
        mine = 1 / x[0]
        shown.append(f"{SHORT[t]} {'< ' if x[1] else ''}{mine:.2f}x")
        ok = ok and mine <= share
    return shown, (ok if shown else None)


def good(r):
    return r is not None and r["exit"] == 0


out.append("## Targets (issue #30)\n")
out.append("| target | measured | met |")
out.append("| --- | --- | --- |")
for scenario, n, seconds, mb, peers_share, only, text in [
    ("first_load", 1_000_000, 0.8, 1024, 0.5, None, "first load, 1M rows: ≤ 0.8 s, ≤ 1 GB, ≤ 0.5× every peer's time"),
    ("first_load", 5_000_000, 4.0, 1024, 0.5, None, "first load, 5M rows: ≤ 4 s, ≤ 1 GB, ≤ 0.5× every peer"),
    ("corrected_1pct", 1_000_000, 1.2, 1024, 0.4, ("polars",),
     "corrected re-export (1%), 1M rows: ≤ 1.2 s, ≤ 1 GB, ≤ 0.4× Polars' merge"),
    ("corrected_1pct", 5_000_000, 6.0, 800, 0.4, ("polars",),
     "corrected re-export (1%), 5M rows: ≤ 6 s, ≤ 800 MB, ≤ 0.4× Polars' merge"),
    ("first_load", 10_000_000, None, 1024, None, None, "first load, 10M rows: ≤ 1 GB (peak memory flat in rows)"),
]:
    r = get("shoplake", scenario, n)
    if r is None:
        out.append(goal(text, "-", None))
        continue
    met = good(r) and (seconds is None or r["seconds"] <= seconds) and (mb is None or r["peak_rss_mb"] <= mb)
    value = cell(r)
    if peers_share is not None:
        shown, ok = against_peers(scenario, n, peers_share, only)
        value += "; shoplake / peer: " + (", ".join(shown) if shown else "no peer measured")
        met = met and ok is not False
    out.append(goal(text, value, met))
first, again = get("shoplake", "first_load", 1_000_000), get("shoplake", "identical_rerun", 1_000_000)
f = fact("versions", tool="shoplake", scenario="identical_rerun", rows=1_000_000)
if good(first) and good(again):
    share = again["seconds"] / first["seconds"]
    versions = f"; {f['new_versions']} new versions" if f else ""
    out.append(goal("identical re-run, 1M rows, local: ≤ 0.05× the first load, no version",
                    f"{cell(again)}, {share:.2f}× the first load{versions}",
                    share <= 0.05 and (f is None or int(f["new_versions"]) == 0)))
else:
    out.append(goal("identical re-run, 1M rows, local: ≤ 0.05× the first load, no version", "-", None))
r, local_first = get("shoplake", "s3_first_load", s3_rows), get("shoplake", "first_load", s3_rows)
text = f"first load on S3 (MinIO, export and table), {s3_rows:,} rows: ≤ 1.2× the local first load"
if good(r) and good(local_first):
    share = r["seconds"] / local_first["seconds"]
    out.append(goal(text, f"{cell(r)}, {share:.2f}× the local {local_first['seconds']:.2f} s", share <= 1.2))
else:
    out.append(goal(text, "-", None))
r, b = get("shoplake", "s3_identical_rerun", s3_rows), fact("s3_bytes", tool="shoplake")
if good(r) and b:
    out.append(goal(f"identical re-run, S3 (MinIO), {s3_rows:,} rows: no download of the export; ≤ 0.5 s",
                    f"{cell(r)}; export bytes downloaded: {int(b['export_get_bytes']):,}",
                    int(b["export_get_bytes"]) == 0 and r["seconds"] <= 0.5))
else:
    out.append(goal(f"identical re-run, S3 (MinIO), {s3_rows:,} rows: no download of the export; ≤ 0.5 s", "-",
                    None))
r = get("shoplake", "year_rerun", year_rows)
out.append(goal(f"re-run of {year_dates} identical dates ({year_rows:,} rows each): ≤ 60 s in all",
                cell(r) if r else "-", None if r is None else good(r) and r["seconds"] <= 60))
out.append("")
if year_dates != 365 or year_rows != 100_000:
    out.append(f"(The year target is for 365 dates of 100,000 rows; this run had {year_dates} of {year_rows:,}.)\n")

# ---------------------------------------------------------------- what each tool does
out.append("## What each tool does\n")
out.append("- **shoplake** `ingest`: parses and checks every line (each value by its kind, the header, the file's "
           "date; bad lines to the rejects table), applies transform.sql, fingerprints rows, writes a first load "
           "with `replaceWhere`, merges only changed rows otherwise, deletes shops missing from the file; no "
           "commit when nothing changed. `backfill` loads a range of dates.")
out.append("- **Python deltalake** (`bench/baseline.py`): `pyarrow.csv.read_csv` (types inferred, no cleaning); "
           "first load `write_deltalake(mode=append)`; otherwise MERGE of the whole file on (id, export_date), "
           "update when any column differs, insert when not matched (no deletes; no partition predicate, except "
           "in the year's re-run).")
out.append("- **Polars** (`bench/polars_peer.py`): `pl.read_csv` with an explicit schema from table.toml (counts "
           "read as Float64 and cast to Int64 after checking for fractions, the list decoded from its JSON text, "
           "dates as Date); a bad value fails the whole file (no per-line rejects); transform.sql's filter and "
           "has_specific_prefix; the last line of a duplicated id kept. First load `write_delta(mode=\"append\")` "
           "partitioned by export_date; otherwise `write_delta(mode=\"merge\")` on the literal date, id and "
           "export_date, `when_matched_update_all()` (every matched row updated, changed or not) and "
           "`when_not_matched_insert_all()`; no deletes. Does not check the header's names or the file's date.")
out.append("- **floe** (`bench/floe_peer.py`, `floe.run` of a generated config, shown by `floe_peer.py config`): "
           "**checks** each value's type (string, boolean, number, date; a bad value rejects the line into a "
           "rejected CSV), `not_null` on id, application_id and export_date, the (id, export_date) key unique "
           "(a duplicate line rejected, the first kept); writes Delta partitioned by export_date. **Does not**: "
           "no list type (nbrs_pinned_items stays unchecked text), counts are `number` (float64; floe's CSV "
           "reader cannot read 17.0 as an integer, and as int64 those lines would be rejected), no derived "
           "column (has_specific_prefix missing), a line without application_id is rejected where shoplake "
           "filters it, no header check (the config says `header: false` because floe 0.7.0 sniffs the header "
           "with Polars' type inference, which fails on the first 17.0 past line 100 and rejects the whole file; "
           "so the header line is one rejected line), no check of the file's date, no deletes. First load "
           "`write_mode: overwrite`; otherwise `merge_scd1` on (id, export_date), which updates every matched "
           "row (its file rewritten) and commits a version even when nothing changed.")
out.append("- **Spark** (`interop/legacy_job.py load`, the legacy pipeline): CSV read with an explicit schema, "
           "the cleaning of `tables/shopify_configuration/transform.sql` (application_id filter, "
           "has_specific_prefix) and the parsing of flags, counts and the list (a bad value becomes null), last "
           "line per id kept; a date with no rows is written with `replaceWhere`, otherwise a MERGE on the "
           "literal date and id, update when any column differs, insert when not matched (no deletes). Spark "
           "defaults otherwise, local[2], driver memory 2 GB, UI off. No `_row_hash` (Spark cannot compute it).")
out.append("")


def short(command):
    words = command.split(" ")
    if len(command) <= 300:
        return command
    csvs = [w for w in words if w.endswith(".csv")]
    if len(csvs) > 2:
        first = words.index(csvs[0])
        rest = [w for w in words[first:] if not w.endswith(".csv")]
        return " ".join(words[:first] + [csvs[0], f"... ({len(csvs)} CSVs) ...", csvs[-1]] + rest)
    return command[:300] + " ..."


out.append("## Commands\n")
out.append("The command of each tool and scenario (of the largest size measured):\n")
out.append("```")
if caller:
    settings = " ".join(f"{name}={shlex.quote(env(name, ''))}" for name in sorted(caller))
    out.append(f"SHOPLAKE_BIN={binary} {settings} bench/run.sh    # make bench with these settings")
else:
    out.append(f"make bench    # = SHOPLAKE_BIN={binary} bench/run.sh")
largest = {}
for (tool, scenario, n), r in by.items():
    if scenario.endswith("_counted"):  # the same command as the timed one
        continue
    if (tool, scenario) not in largest or n > largest[(tool, scenario)][0]:
        largest[(tool, scenario)] = (n, r)
for (tool, scenario), (n, r) in sorted(largest.items(), key=lambda kv: (TOOLS.index(kv[0][0]), kv[0][1])):
    out.append(f"# {tool} {scenario} ({n:,} rows)\n{short(r['command'])}")
out.append("```")

out.append("\n## Versions and machine\n")
mem_gib = int(read("/proc/meminfo").split()[1]) / 1048576
cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2")
out.append(f"- {platform.platform()}, {os.cpu_count()} cores, {mem_gib:.0f} GiB")
out.append(f"- CPU: {cpu}")
out.append(f"- {sh(binary + ' --version')}, {sh('rustc --version')}, {profile} profile")
venv = Path(env("SHOPLAKE_CACHE", str(Path.home() / ".cache" / "shoplake"))) / "bench-venv"
installed = ""
try:
    marker = (venv / ".shoplake-installed").read_text().splitlines()
    installed = f" (installed by bench/run.sh into {venv} in {marker[1]} s, then cached)"
except (OSError, IndexError):
    pass
python = sh(f"{venv}/bin/python --version") or "?"
out.append(f"- Peers in one venv, {python}: {', '.join(f'{k} {v}' for k, v in pins.items())}{installed}")
if "spark" in tools_seen:
    java = sh("java -version 2>&1 | head -1")
    out.append(f"- Spark: pyspark 3.5.7, delta-spark 3.3.2 (jars io.delta:delta-spark_2.12:3.3.2, "
               f"io.delta:delta-storage:3.3.2, org.antlr:antlr4-runtime:4.9.3 from Maven Central), {java}")
if footnotes:
    out.append("")
    for i, text in enumerate(footnotes, 1):
        out.append(f"[^{i}]: {text}")
print("\n".join(out))
