#!/usr/bin/env python3
"""Runs one command and prints its wall time and peak RSS as JSON.

Usage: measure.py -- CMD ARGS...   (stdout/stderr of CMD go to measure's stderr)
"""
import json
import resource
import subprocess
import sys
import time

if __name__ == "__main__":
    args = sys.argv[sys.argv.index("--") + 1 :]
    started = time.monotonic()
    proc = subprocess.run(args, stdout=sys.stderr, stderr=sys.stderr)
    seconds = time.monotonic() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": round(seconds, 3), "peak_rss_mb": round(peak_kib / 1024, 1), "exit": proc.returncode}))
