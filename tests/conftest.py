"""Shared pytest configuration: a summary of the worst analytic DVH errors (with ``-v``)."""

from __future__ import annotations

import phantoms as ph


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if ph.WORST and config.option.verbose > 0:
        terminalreporter.write_sep("-", "worst |engine - analytic truth| per metric type")
        units = {"volume": "%", "V[%]": "pp", "Dmean/Dx%": "Gy", "Dmin/Dmax": "Gy"}
        for kind, (err, label) in sorted(ph.WORST.items()):
            terminalreporter.write_line(f"{kind:10s} {err:+.4f} {units.get(kind, '')}  ({label})")
