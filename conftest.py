"""Keep the notebooks that nbval executes: with ``SSLKIT_EXECUTED=DIR`` set (``make test`` sets it),
every notebook run through nbval is written to DIR with the outputs it produced, so ``make site``
builds the course website from them instead of running the notebooks a second time."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat

_executed: dict = {}      # notebook path -> the nbval file node whose cells ran
_seconds: dict = {}       # notebook name -> seconds its cells took (set-up, call and teardown)


def pytest_runtest_makereport(item, call):
    if getattr(item, "cell", None) is not None:
        name = Path(str(item.parent.fspath)).name
        _seconds[name] = _seconds.get(name, 0.0) + call.duration
    if call.when != "call" or not os.environ.get("SSLKIT_EXECUTED"):
        return
    cell, outputs = getattr(item, "cell", None), getattr(item, "test_outputs", None)
    if cell is None or outputs is None:       # not an nbval cell, or one that did not run
        return
    cell.outputs = [nbformat.from_dict(dict(o)) for o in outputs if not _quiet(cell, o)]
    cell.execution_count = item.cell_num + 1
    _executed[str(item.parent.fspath)] = item.parent


def _quiet(cell, output) -> bool:
    """An execute_result that IPython would not show: the cell's last line ends with ``;``. nbval
    runs cells without storing them in the history, where IPython looks for that semicolon, so its
    outputs hold the result too, and every figure returned that way would appear twice on the site."""
    lines = [line.split("#")[0].rstrip() for line in cell.source.splitlines()]
    lines = [line for line in lines if line]
    return output.get("output_type") == "execute_result" and bool(lines) and lines[-1].endswith(";")


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get("SSLKIT_EXECUTED")
    if not out or not _executed:
        return
    Path(out).mkdir(parents=True, exist_ok=True)
    for path, node in _executed.items():
        target = Path(out) / Path(path).name
        tmp = target.with_name(f".{target.name}.tmp")
        for cell in node.nb.cells:             # nbval's outputs lack fields nbformat asks for
            for o in cell.get("outputs", []):
                if o.output_type in ("display_data", "execute_result"):
                    o.setdefault("metadata", {})
                if o.output_type == "execute_result":
                    o.setdefault("execution_count", cell.execution_count)
        nbformat.write(node.nb, tmp)
        tmp.replace(target)


def pytest_terminal_summary(terminalreporter):
    """Each notebook's time under nbval (its cells, kernel start included), for the quick profile's budgets."""
    if _seconds:
        terminalreporter.section("notebook times")
        for name, seconds in _seconds.items():
            terminalreporter.write_line(f"{seconds:7.1f} s  {name}")
