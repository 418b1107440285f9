#!/usr/bin/env python3
"""Reads Prometheus text exposition format on stdin and prints the value of
one sample, for deploy/prometheus/test.sh.

    promquery.py NAME [LABEL=VALUE ...]

The sample must have the metric NAME and every LABEL=VALUE given (other labels
may be present). Exactly one sample must match: none or several is exit 1,
with the candidates on stderr, so a test fails with a useful message.
"""

import re
import sys

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')
ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse_labels(text):
    labels = {}
    pos = 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        if not m:
            raise ValueError(f"bad label set: {{{text}}}")
        labels[m.group(1)] = re.sub(r'\\[\\"n]', lambda e: ESCAPES[e.group(0)], m.group(2))
        pos = m.end()
    return labels


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    name = argv[1]
    wanted = dict(arg.split("=", 1) for arg in argv[2:])
    matches, same_name = [], []
    for line in sys.stdin:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m or m.group(1) != name:
            continue
        labels = parse_labels(m.group(2) or "")
        same_name.append(line)
        if all(labels.get(k) == v for k, v in wanted.items()):
            matches.append(m.group(3))
    if len(matches) != 1:
        print(f"promquery: {len(matches)} samples of {name} match {wanted}; samples of {name}:", file=sys.stderr)
        for line in same_name or ["(none)"]:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(matches[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
