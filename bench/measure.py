#!/usr/bin/env python3
"""Runs one command and prints its wall time and peak RSS as JSON.

Usage: measure.py [--interval SECONDS] [--limit-mb MB] [--timeout SECONDS]
                  [--report] -- CMD ARGS...
(stdout/stderr of CMD go to measure's stderr)

Peak RSS is that of the whole process tree: a Spark job's work happens in
the JVM that pyspark starts as a grandchild, so /proc is sampled every
--interval seconds (default 0.05) and the RSS of the command and all its
descendants is summed (this process is their subreaper, so a descendant
that outlives its parent is still counted). The sampled peak can miss a short spike of a single
process; the kernel's exact high-water mark of the largest descendant
(ru_maxrss) is taken when it is higher. Fields: seconds, peak_rss_mb (the
larger of the two), tree_peak_rss_mb (sampled), max_rss_one_process_mb
(ru_maxrss), processes (most processes seen in the tree at once), exit.

Guards, so that one peer cannot take the machine down: with --limit-mb the
whole tree is killed as soon as its sampled RSS passes MB, with --timeout when
it has run SECONDS; the figures then carry `killed` ("memory" or "timeout")
and the exit code is that of the kill (-9).

With --report, CMD's stdout is also kept and its last JSON value (a whole
JSON document, else the last line that parses) is summarised into `report`:
scalar fields as they are; a shoplake backfill report ({"dates": [...]}) as
the number of dates, the count of each status and the sum of each rows_*
field.
"""
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def parents():
    """pid -> ppid of every process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces.
        fields = stat[stat.rfind(b")") + 2 :].split()
        out[int(name)] = int(fields[1])
    return out


def tree_rss_kib(root):
    """RSS of root's descendants (not root itself) and how many there are."""
    ppid = parents()
    children = {}
    for pid, parent in ppid.items():
        children.setdefault(parent, []).append(pid)
    total, count, todo = 0, 0, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_KIB
            count += 1
        except OSError:
            pass
        todo.extend(children.get(pid, []))
    return total, count


def become_subreaper():
    """Orphaned descendants (a daemonized JVM) are re-parented to this process
    instead of init, so they stay in the measured tree."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (ImportError, OSError, AttributeError):  # no ctypes, no libc, no prctl: best effort
        pass


def descendants(root):
    ppid = parents()
    children = {}
    for pid, parent in ppid.items():
        children.setdefault(parent, []).append(pid)
    out, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def kill_tree(root, proc):
    """SIGKILL the command's process group and every descendant of this process."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    for pid in descendants(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def last_json(text):
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    for line in reversed(text.splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def summarise(value):
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("dates"), list):  # shoplake backfill
        dates = [d for d in value["dates"] if isinstance(d, dict)]
        out = {"dates": len(dates), "status": dict(Counter(str(d.get("status")) for d in dates))}
        for d in dates:
            for key, v in d.items():
                if key.startswith("rows_") and isinstance(v, int):
                    out[key] = out.get(key, 0) + v
        return out
    return {k: v for k, v in value.items() if isinstance(v, (str, int, float, bool)) or v is None}


def option(argv, name, convert):
    if name in argv[: argv.index("--")]:
        i = argv.index(name)
        value = convert(argv[i + 1])
        del argv[i : i + 2]
        return value
    return None


def main():
    argv = sys.argv[1:]
    interval = option(argv, "--interval", float) or 0.05
    limit_mb = option(argv, "--limit-mb", float)
    timeout = option(argv, "--timeout", float)
    report = "--report" in argv[: argv.index("--")]
    args = argv[argv.index("--") + 1 :]
    if report:
        with tempfile.TemporaryFile() as out:
            figures = measure(args, interval, limit_mb, timeout, out)
    else:
        figures = measure(args, interval, limit_mb, timeout, None)
    print(json.dumps(figures))


def measure(args, interval, limit_mb, timeout, out):
    become_subreaper()
    me = os.getpid()
    peak = {"kib": 0, "processes": 0}
    killed = {}
    started = time.monotonic()
    proc = subprocess.Popen(args, stdout=out or sys.stderr, stderr=sys.stderr, start_new_session=True)
    done = threading.Event()

    def sample():
        while not done.is_set():
            kib, count = tree_rss_kib(me)
            peak["kib"] = max(peak["kib"], kib)
            peak["processes"] = max(peak["processes"], count)
            if not killed:
                if limit_mb and kib / 1024 > limit_mb:
                    killed["why"] = "memory"
                elif timeout and time.monotonic() - started > timeout:
                    killed["why"] = "timeout"
                if killed:
                    print(f"[measure] killing {args[0]}: {killed['why']} limit reached", file=sys.stderr)
                    kill_tree(me, proc)
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = proc.wait()
    seconds = time.monotonic() - started
    done.set()
    sampler.join()
    if killed:  # a descendant may have outlived the group kill
        kill_tree(me, proc)
    one = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    figures = {
        "seconds": round(seconds, 3),
        "peak_rss_mb": round(max(peak["kib"], one) / 1024, 1),
        "tree_peak_rss_mb": round(peak["kib"] / 1024, 1),
        "max_rss_one_process_mb": round(one / 1024, 1),
        "processes": peak["processes"],
        "exit": code,
    }
    if killed:
        figures["killed"] = killed["why"]
    if out is not None:
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
        sys.stderr.write(text[-2000:])
        summary = summarise(last_json(text))
        if summary is not None:
            figures["report"] = summary
    return figures


if __name__ == "__main__":
    main()
