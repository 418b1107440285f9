"""Says, at the end of every run of the tier, which validations ran (olvalidate.Validator.status()):
the classes of openlineage-python always; the pinned JSON schemas only when installed."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import olvalidate


def pytest_report_header(config):
    return olvalidate.Validator().status()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    terminalreporter.section("lineage validation")
    terminalreporter.write_line(olvalidate.Validator().status())
