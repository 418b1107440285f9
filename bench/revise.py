#!/usr/bin/env python3
"""Writes a corrected re-export: the same file with a share of its shops changed.

Usage: revise.py IN OUT SHARE   (SHARE=0.01 changes 1% of the data lines)
The change flips the install channel, so every changed line is an update.
"""
import sys

src, dst, share = sys.argv[1], sys.argv[2], float(sys.argv[3])
every = max(1, round(1 / share))
with open(src, "r", encoding="utf-8", newline="") as fin, open(dst, "w", encoding="utf-8", newline="") as fout:
    for n, line in enumerate(fin):
        if n > 0 and n % every == 0:
            head, _, date = line.rstrip("\n").rpartition(",")
            head, _, channel = head.rpartition(",")
            line = f"{head},{'direct' if channel != 'direct' else 'partner_referral'},{date}\n"
        fout.write(line)
