#!/usr/bin/env python3
"""Runs one command and prints its wall time and peak RSS as JSON.

Usage: measure.py [--interval SECONDS] -- CMD ARGS...
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
"""
import json
import os
import resource
import subprocess
import sys
import threading
import time

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


def main():
    argv = sys.argv[1:]
    interval = 0.05
    if argv and argv[0] == "--interval":
        interval = float(argv[1])
        argv = argv[2:]
    args = argv[argv.index("--") + 1 :]
    become_subreaper()
    me = os.getpid()
    peak = {"kib": 0, "processes": 0}
    started = time.monotonic()
    proc = subprocess.Popen(args, stdout=sys.stderr, stderr=sys.stderr)
    done = threading.Event()

    def sample():
        while not done.is_set():
            kib, count = tree_rss_kib(me)
            peak["kib"] = max(peak["kib"], kib)
            peak["processes"] = max(peak["processes"], count)
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = proc.wait()
    seconds = time.monotonic() - started
    done.set()
    sampler.join()
    one = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({
        "seconds": round(seconds, 3),
        "peak_rss_mb": round(max(peak["kib"], one) / 1024, 1),
        "tree_peak_rss_mb": round(peak["kib"] / 1024, 1),
        "max_rss_one_process_mb": round(one / 1024, 1),
        "processes": peak["processes"],
        "exit": code,
    }))


if __name__ == "__main__":
    main()
