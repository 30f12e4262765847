"""One source, two versions: the student and instructor notebooks, the hosted-service cells."""

from __future__ import annotations

import contextlib
import io
import keyword
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import nbformat
import pytest

from sslkit import course
from sslkit.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_student_source_replaces_solutions_and_drops_hidden_tests():
    src = ("def f(x):\n    \"\"\"doc\"\"\"\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION\n"
           "print(1)\n### BEGIN HIDDEN TESTS\nassert f(1) == 2\n### END HIDDEN TESTS")
    assert course.student_source(src) == ("def f(x):\n    \"\"\"doc\"\"\"\n    # YOUR CODE HERE\n"
                                          "    raise NotImplementedError()\nprint(1)")
    assert course.student_source("x = 1") == "x = 1"


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    out = tmp_path_factory.mktemp("course")
    return {kind: course.write_course(kind, out / kind) for kind in ("student", "instructor")}


def _run_exercises(path: Path) -> list[str]:
    """Run a notebook's exercise block as the kernel would (cell by cell, one namespace); the lines printed."""
    nb = nbformat.read(path, as_version=4)
    ns: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for cell in course.exercise_cells(nb):
            if cell.cell_type == "code":
                exec(compile(cell.source, f"{path.name}:{cell.id}", "exec"), ns)   # raises on a traceback
    return printed.getvalue().splitlines()


def test_every_method_notebook_has_checked_exercises(versions):
    for path in versions["instructor"]:
        if path.name[:2] in {"01", "02", "03", "04", "05", "06"}:
            cells = course.exercise_cells(nbformat.read(path, as_version=4))
            checks = [c for c in cells if c.cell_type == "code" and "check(" in c.source]
            assert 3 <= len(checks) <= 6, path.name      # the mechanism in small pieces, and one harder


def test_every_check_passes_on_the_instructor_version(versions):
    lines = [line for path in versions["instructor"] for line in _run_exercises(path)]
    assert len(lines) >= 12 and all(line.startswith("Right: ") for line in lines), lines


def test_every_check_is_not_done_yet_on_the_student_version(versions):
    for path in versions["student"]:
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
        text = nbformat.writes(nb)
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
        lines = _run_exercises(path)
        assert all(line.startswith("Not done yet: ") for line in lines), lines


def _shape(line: str) -> str:
    """A line of code with its names and numbers replaced (attributes and keywords kept): the same
    computation written with other variable names reads the same."""
    tokens = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline):
            if tok.type == tokenize.COMMENT or tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER):
                continue
            if tok.type == tokenize.NAME and not keyword.iskeyword(tok.string) and tokens[-1:] != ["."]:
                tokens.append("v")
            elif tok.type in (tokenize.NUMBER, tokenize.STRING):
                tokens.append("0")
            else:
                tokens.append(tok.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return ""
    return " ".join(tokens)


def _solution_lines(source: str) -> list[str]:
    """The substantial lines of a solution (between nbgrader's delimiters), as shapes of the expression
    they compute (a leading ``return`` or ``name =`` left out)."""
    body = re.findall(r"### BEGIN SOLUTION[^\n]*\n(.*?)^[ \t]*### END SOLUTION", source, re.S | re.M)
    shapes = [re.sub(r"^(return |v = )", "", _shape(line)) for part in body for line in part.splitlines()]
    return [s for s in shapes if len(s.replace(" ", "")) >= 7]


def _leaked(wanted: set[str], code: str) -> set[str]:
    """The solution lines whose expression appears in ``code``, inside any of its lines."""
    lines = [f" {_shape(line)} " for line in code.splitlines()]
    return {w for w in wanted if any(f" {w} " in line for line in lines)}


@pytest.mark.parametrize("name", sorted(p.name for p in course.source_dir().glob("[0-9][0-9]_*.ipynb")))
def test_no_cell_before_an_exercise_holds_its_solution(name):
    """What the student version shows above an exercise must not answer it: no earlier cell defines the
    exercise's function, and none holds half or more of its solution's lines (names aside)."""
    source = nbformat.read(course.source_dir() / name, as_version=4)
    student = course.to_student(source)
    for j, cell in enumerate(source.cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("solution"):
            continue
        wanted = set(_solution_lines(cell.source))
        defined = re.findall(r"^def (\w+)\(", cell.source, re.M)
        for i, before in enumerate(student.cells[:j]):
            if before.cell_type != "code":
                continue
            for fn in defined:
                m = re.search(rf"^def {fn}\(.*?(?=^\S|\Z)", before.source, re.S | re.M)
                assert not m or "raise NotImplementedError()" in m.group(0), \
                    f"{name}: cell {i} defines {fn}, the answer to the exercise in cell {j}"
            shared = _leaked(wanted, before.source)
            assert len(shared) < (1 if len(wanted) == 1 else max(2, len(wanted) / 2)), \
                f"{name}: cell {i} holds {len(shared)} of the {len(wanted)} lines that answer the exercise " \
                f"'{meta['grade_id']}' in cell {j}: {sorted(shared)}"


def test_the_leak_check_sees_an_answer_under_other_names():
    solution = ("def my_f(z, t):\n    ### BEGIN SOLUTION\n    z = F.normalize(z, dim=1)\n    sim = z @ z.T / t\n"
                "    return sim.softmax(1)\n    ### END SOLUTION")
    leak = "u = F.normalize(emb, dim=1)\nscores = u @ u.T / tau  # by hand\nprint(scores.softmax(1))"
    wanted = set(_solution_lines(solution))
    assert len(wanted) == 3 and _leaked(wanted, leak) == wanted
    assert not _leaked(wanted, "z = nt_xent(z1, z2, 0.5)\nloss = F.cross_entropy(sim, labels)")
    turn = set(_solution_lines("def my_turn(x):\n    ### BEGIN SOLUTION\n    return x.transpose(2, 3).flip(2)\n"
                               "    ### END SOLUTION"))
    assert _leaked(turn, "quarter = lambda im: im.transpose(2, 3).flip(2)")


def test_the_versions_keep_nbgrader_metadata(versions):
    for kind in ("student", "instructor"):
        nb = nbformat.read(versions[kind][3], as_version=4)
        ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
        assert "nt_xent" in ids and "check_nt_xent" in ids


def test_the_source_notebooks_and_readme_carry_the_current_badge_and_install_cell(tmp_path):
    # stamping a copy of the sources changes nothing: they are in step with SSLKIT_REPO
    for path in course.source_dir().glob("[0-9][0-9]_*.ipynb"):
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "README.md").write_text((ROOT / "README.md").read_text())
    assert course.stamp_sources(tmp_path, tmp_path / "README.md") == []
    assert course.colab_url("00_setup_and_data.ipynb") in (ROOT / "README.md").read_text()
    for path in course.source_dir().glob("[0-9][0-9]_*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        first_code = next(c for c in nb.cells if c.cell_type == "code")
        assert first_code.id == course.INSTALL_ID, path.name
        assert course.colab_url(path.name) in "".join(c.source for c in nb.cells[:2])


def test_the_course_command_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["course", "student", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "was not written by `sslkit course`" in err
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]
    assert main(["course", "student", str(tmp_path / "out")]) == 0
    assert main(["course", "instructor", str(tmp_path / "out")]) == 0         # its own folder: replaced
    assert "instructor" in (tmp_path / "out" / course.MARKER).read_text()
    assert main(["course", "student"]) == 2


@pytest.mark.parametrize("kind", ["student", "instructor"])
def test_a_version_runs_top_to_bottom_under_nbval(kind, versions, tmp_path_factory):
    """One notebook of each version through nbval on the quick profile (every notebook of the source
    runs under `make test`; the versions differ from it only in the exercise block, run above)."""
    pytest.importorskip("nbval")
    path = next(p for p in versions[kind] if p.name.startswith("01_"))
    cache = tmp_path_factory.getbasetemp() / "nbval-cache"       # shared: the second version loads the run
    env = {**os.environ, "SSLKIT_PROFILE": "quick", "SSLKIT_CACHE": str(cache), "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.setdefault("SSLKIT_DATA", str(ROOT / "data"))
    env.pop("SSLKIT_EXECUTED", None)          # build/executed holds the source notebooks' runs only
    proc = subprocess.run([sys.executable, "-m", "pytest", str(path), "--nbval-lax", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(path.parent)], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_the_install_cell_installs_sslkit_from_a_wheel_in_a_fresh_environment(tmp_path):
    """What a hosted service does with the notebook's install cell, offline: a fresh virtual
    environment without sslkit, the wheel named by SSLKIT_INSTALL."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(ROOT)], check=True, capture_output=True)
    (wheel,) = wheels.glob("sslkit-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    purelib = subprocess.check_output([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                      text=True).strip()
    # torch and the rest from this environment, as a hosted service has them pre-installed; a plain
    # path in a .pth does not run that folder's own .pth files, so the editable sslkit stays out
    Path(purelib, "preinstalled.pth").write_text("\n".join(p for p in sys.path if p.endswith("site-packages")))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SSLKIT_PROFILE")}
    assert subprocess.run([py, "-c", "import sslkit"], cwd=tmp_path, env=env, capture_output=True).returncode != 0

    env["SSLKIT_INSTALL"] = f"--no-deps --no-index {wheel}"
    proc = subprocess.run([py, "-c", course.install_cell_source()], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"installing sslkit from --no-deps --no-index {wheel}" in proc.stdout
    assert "sslkit ready; profile: quick" in proc.stdout          # no GPU here: the quick profile
    # run again, it does nothing: sslkit is there, installed in the fresh environment
    again = subprocess.run([py, "-c", course.install_cell_source() + "\nimport sslkit; print(sslkit.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
    assert "installing" not in again.stdout and "sslkit ready" in again.stdout
    assert again.stdout.splitlines()[-1].startswith(purelib)
