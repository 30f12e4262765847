"""Every method notebook follows the course's rhythm (issue 21): the data note at the top, a diagram
of the method, one training step written out, numbered sections in order, and the open exercises
at the end, after the last section."""

import re

import nbformat
import pytest

from sslkit import course

# every notebook that teaches a method: all but the set-up (00) and the two that compare the references (07, 08)
METHOD_NOTEBOOKS = sorted(p.name for p in course.source_dir().glob("[0-9][0-9]_*.ipynb")
                          if p.name[:2] not in {"00", "07", "08"})


@pytest.fixture(params=METHOD_NOTEBOOKS)
def notebook(request):
    return request.param, nbformat.read(course.source_dir() / request.param, as_version=4)


def _code(nb):
    return [c.source for c in nb.cells if c.cell_type == "code"]


def test_the_data_note_comes_before_any_training(notebook):
    name, nb = notebook
    code = _code(nb)
    note = next((i for i, s in enumerate(code) if "data_note(" in s), None)
    train = next((i for i, s in enumerate(code) if re.search(r"\bpretrain\(|\.backward\(\)", s)), None)
    assert note is not None and (train is None or note < train), f"{name}: no data note before training"


def test_a_diagram_and_one_explicit_step(notebook):
    name, nb = notebook
    code = _code(nb)
    assert any("method_diagram(" in s for s in code), f"{name}: no diagram of the method"
    steps = [s for s in code if ".backward()" in s and re.search(r"\.step\(\)", s) and "zero_grad" in s]
    assert steps, f"{name}: no training step written out (backward, optimiser step) in one cell"
    assert any(re.search(r"\bprint\(.*loss", s, re.S) for s in steps), f"{name}: the written-out step prints no loss"


def test_sections_are_numbered_in_order_and_the_exercises_close_the_notebook(notebook):
    name, nb = notebook
    headings = [h for c in nb.cells if c.cell_type == "markdown" for h in re.findall(r"^## (.+)$", c.source, re.M)]
    numbers = [int(m.group(1)) for h in headings if (m := re.match(r"(\d+)\.", h))]
    assert numbers == list(range(1, len(numbers) + 1)), f"{name}: sections numbered {numbers}"
    exercises = [i for i, h in enumerate(headings) if "Exercises" in h]
    assert exercises == [len(headings) - 1], f"{name}: the exercises are not the one last section: {headings}"
