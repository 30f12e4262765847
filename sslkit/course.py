"""The course from one source: student and instructor notebooks, hosted-service cells, the site's pages.

The notebooks in ``notebooks/`` are the instructor version: every coding exercise's solution sits
between nbgrader's delimiters (``### BEGIN SOLUTION`` / ``### END SOLUTION``) in a cell with nbgrader
metadata, and each check cell may hold ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS`` for
autograding. The student version replaces every solution by nbgrader's own placeholder
(``raise NotImplementedError()``, which the checks report as "not done yet"), drops the hidden tests
and clears the outputs; instructors who grade with nbgrader can use the source notebooks as they are.

Every notebook starts with an "Open in Colab" badge and an install cell (:func:`stamp_hosted`),
both made from :data:`SSLKIT_REPO`, the one place that names the repository.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import nbformat

# The repository the badges and the install cell point to. A placeholder until the project is
# published: change it here, then run `python -m sslkit course stamp` to rewrite the notebooks.
SSLKIT_REPO = "https://github.com/YOUR-ORG/sslkit"
SSLKIT_BRANCH = "main"

PLACEHOLDER = "# YOUR CODE HERE\nraise NotImplementedError()"   # nbgrader's own, so nbgrader reads it too
MARKER = ".sslkit-course"                                        # marks a folder this module wrote
BADGE_ID, INSTALL_ID = "hosted-badge", "hosted-install"

_SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION[^\n]*\n.*?^[ \t]*### END SOLUTION[^\n]*(\n|$)", re.S | re.M)
_HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS[^\n]*\n.*?^[ \t]*### END HIDDEN TESTS[^\n]*(\n|$)", re.S | re.M)


def source_dir() -> Path:
    """The checkout's ``notebooks/`` (the course is built from a clone, not from an installed wheel)."""
    path = Path(__file__).resolve().parents[1] / "notebooks"
    if not path.is_dir():
        raise FileNotFoundError(f"no notebooks folder at {path}: run the course command from a clone of "
                                f"{SSLKIT_REPO}, or pass --source DIR.")
    return path


# ------------------------------------------------------------------------------- one source, two versions

def student_source(source: str) -> str:
    """A code cell's text with every solution replaced by the placeholder (indented as the solution
    was) and every hidden test removed."""
    source = _SOLUTION.sub(lambda m: "\n".join(m.group(1) + line for line in PLACEHOLDER.splitlines()) + m.group(2),
                           source)
    return _HIDDEN.sub("", source).rstrip("\n")


def is_exercise_cell(cell) -> bool:
    return "nbgrader" in cell.get("metadata", {})


def to_student(nb, clear_outputs: bool = True):
    """The student version of a notebook (a copy): solutions out, hidden tests out, outputs cleared
    (with ``clear_outputs=False`` only the exercise cells' outputs are cleared: the site's pages)."""
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.source = student_source(cell.source)
        if clear_outputs or is_exercise_cell(cell):
            cell.outputs, cell.execution_count = [], None
    return nb


def to_instructor(nb):
    """The instructor version (a copy): the source as it is, solutions and hidden tests kept."""
    return nbformat.reads(nbformat.writes(nb), as_version=4)


def write_course(kind: str, out_dir: str | Path, source: str | Path | None = None) -> list[Path]:
    """Write the ``student`` or ``instructor`` notebooks of ``source`` (default: the checkout's
    ``notebooks/``) into ``out_dir``, all or nothing. ``out_dir`` must be new, empty, or a folder this
    function wrote before (it is then replaced)."""
    if kind not in ("student", "instructor"):
        raise ValueError(f"unknown course version '{kind}': use student or instructor.")
    src = Path(source) if source else source_dir()
    notebooks = sorted(src.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no course notebooks (NN_name.ipynb) in {src}.")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).exists())):
        raise ValueError(f"{out} exists and was not written by `sslkit course`: choose a new or empty folder.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for path in notebooks:
            nb = stamp_hosted(nbformat.read(path, as_version=4), path.name)
            nb = to_student(nb) if kind == "student" else to_instructor(nb)
            nbformat.write(nb, tmp / path.name)
        (tmp / MARKER).write_text(f"{kind} version of {src}\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out / p.name for p in notebooks]


# ------------------------------------------------------------------------------- hosted services

def colab_url(notebook: str, repo: str = SSLKIT_REPO, branch: str = SSLKIT_BRANCH) -> str:
    """Colab's address for ``notebooks/<notebook>`` of a GitHub repository."""
    m = re.match(r"https://github\.com/([^/]+/[^/]+?)/?$", repo)
    if not m:
        raise ValueError(f"SSLKIT_REPO must be a GitHub address like https://github.com/OWNER/NAME, got {repo}.")
    return f"https://colab.research.google.com/github/{m.group(1)}/blob/{branch}/notebooks/{notebook}"


def badge_markdown(notebook: str) -> str:
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(notebook)})")


def install_cell_source(repo: str = SSLKIT_REPO) -> str:
    """The first code cell: on a hosted service without sslkit it installs it (``$SSLKIT_INSTALL``, if
    set, is what pip installs: a wheel, a folder, with options; tests use it offline); then it says
    which profile runs (full on a GPU, quick otherwise, as :func:`sslkit.profiles.get_profile` picks)."""
    return f"""# On Colab, Kaggle or any Jupyter without sslkit this installs it (a minute); elsewhere it does nothing.
import importlib.util, os, shlex, subprocess, sys
if importlib.util.find_spec("sslkit") is None:
    source = os.environ.get("SSLKIT_INSTALL", "git+{repo}")
    print(f"installing sslkit from {{source}} ...")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *shlex.split(source)], check=True)
    importlib.invalidate_caches()
if "google.colab" in sys.modules:      # Colab shows ipywidgets 8 through its third-party widget manager
    from google.colab import output
    output.enable_custom_widget_manager()
from sslkit.profiles import get_profile
print(f"sslkit ready; profile: {{get_profile().name}} (full on a GPU, quick otherwise; SSLKIT_PROFILE overrides)")"""


def stamp_hosted(nb, notebook: str):
    """Put (or refresh) the Colab badge and the install cell at the top of ``nb``; idempotent."""
    cells = [c for c in nb.cells if c.get("id") not in (BADGE_ID, INSTALL_ID)]
    badge = nbformat.v4.new_markdown_cell(badge_markdown(notebook), id=BADGE_ID)
    install = nbformat.v4.new_code_cell(install_cell_source(), id=INSTALL_ID)
    # the title stays the first thing a reader sees; the badge sits under it, the install cell after
    title = 1 if cells and cells[0].cell_type == "markdown" else 0
    nb.cells = cells[:title] + [badge, install] + cells[title:]
    return nb


def stamp_sources(source: str | Path | None = None, readme: str | Path | None = None) -> list[Path]:
    """Rewrite the source notebooks' badge and install cell (and the README's badge) from
    :data:`SSLKIT_REPO`; returns the files that changed."""
    src = Path(source) if source else source_dir()
    changed = []
    for path in sorted(src.glob("[0-9][0-9]_*.ipynb")):
        before = path.read_text()
        after = nbformat.writes(stamp_hosted(nbformat.reads(before, as_version=4), path.name)) + "\n"
        if after != before:
            path.write_text(after)
            changed.append(path)
    readme = Path(readme) if readme else src.parent / "README.md"
    if readme.exists():
        text = readme.read_text()
        new = re.sub(r"https://colab\.research\.google\.com/github/[^)\s]*?/notebooks/([\w.-]+\.ipynb)",
                     lambda m: colab_url(m.group(1)), text)
        if new != text:
            readme.write_text(new)
            changed.append(readme)
    return changed


# ------------------------------------------------------------------------------- the exercises

EXERCISE_HEADING = "## Coding exercises"


def exercise_cells(nb) -> list:
    """The notebook's coding-exercise cells, in order: every cell with nbgrader metadata (the locked
    imports, each solution and each check). Exercises sit where the notebook teaches their piece, and
    each is self-contained: run in order in one fresh namespace, these cells need nothing else."""
    return [cell for cell in nb.cells if is_exercise_cell(cell)]


def solutions(source: str | Path | None = None) -> dict[str, str]:
    """``{exercise name: the code of its solution cell}`` over the source notebooks."""
    out = {}
    for path in sorted((Path(source) if source else source_dir()).glob("[0-9][0-9]_*.ipynb")):
        for cell in exercise_cells(nbformat.read(path, as_version=4)):
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell.cell_type == "code" and meta.get("solution"):
                out[meta["grade_id"]] = cell.source
    return out


# ------------------------------------------------------------------------------- the website

EXECUTED_DIR = Path("build/executed")      # where `make test` keeps the notebooks nbval ran
SITE_DIR = Path("build/site")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# the same note as sslkit.widgets.Explorer's where a live front end has no widgets
WIDGET_NOTE = ("(Interactive controls need a widget front end, such as JupyterLab or Colab with widgets on: "
               "the figure above shows the first setting.)")
BADGE_SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="117" height="20" role="img" aria-label="Open in Colab">
<rect width="117" height="20" rx="3" fill="#555"/><rect x="36" width="81" height="20" rx="3" fill="#f9ab00"/>
<text x="18" y="14" fill="#fff" font-family="Verdana,sans-serif" font-size="11" text-anchor="middle">open</text>
<text x="76" y="14" fill="#fff" font-family="Verdana,sans-serif" font-size="11" text-anchor="middle">in Colab</text></svg>
"""
REMOTE_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"

CONF_PY = '''# Written by `python -m sslkit course site`; the pages are notebooks that `make test` executed.
project = "sslkit"
extensions = ["myst_nb"]
nb_execution_mode = "off"             # never run a notebook here: show the outputs it already has
nb_output_stderr = "remove"           # progress bars and warnings are for the live notebook
myst_enable_extensions = ["dollarmath", "amsmath"]
html_theme = "alabaster"
html_theme_options = {"show_relbars": True, "description": "self-supervised learning you can read, run and compare"}
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}
html_static_path = ["_static"]
exclude_patterns = ["_build"]
'''


def _current(executed, source) -> bool:
    """Did ``executed`` come from this ``source`` (the same code in every cell)?"""
    code = lambda nb: [c.source for c in nb.cells if c.cell_type == "code"]
    return code(executed) == code(source)


def site_notebook(nb, version: str = "student"):
    """A page of the site: the executed notebook as the students get it (solutions out, the exercise
    cells' outputs cleared) or as instructors do; widgets replaced by a one-line note under their
    first figure, the Colab badge image served by the site itself."""
    nb = to_student(nb, clear_outputs=False) if version == "student" else to_instructor(nb)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = cell.source.replace(REMOTE_BADGE, "_static/colab-badge.svg")
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_MIME in data:
                del data[WIDGET_MIME]
                data["text/plain"] = WIDGET_NOTE
    return nb


def _readme_page(readme: str) -> str:
    """The README as the site's front page: notebook links point at the pages, other relative links
    at the repository, and the list of pages follows the title."""
    text = re.sub(r"\]\(notebooks/([\w.-]+)\.ipynb\)", r"](\1.ipynb)", readme)
    text = re.sub(r"\]\((?!https?:|#|mailto:|_static/)([^)\s]+)\)", lambda m: f"]({SSLKIT_REPO}/blob/{SSLKIT_BRANCH}/{m.group(1)})",
                  text.replace(f"]({REMOTE_BADGE})", "](_static/colab-badge.svg)"))
    return text


def build_site(executed: str | Path = EXECUTED_DIR, out: str | Path = SITE_DIR, source: str | Path | None = None,
               readme: str | Path | None = None, version: str = "student") -> Path:
    """Build the course website (Sphinx + myst-nb) from the notebooks that the tests executed; all
    or nothing. Returns the site's index.html."""
    import subprocess
    import sys

    if version not in ("student", "instructor"):
        raise ValueError(f"unknown site version '{version}': use student or instructor.")
    try:
        import myst_nb  # noqa: F401
        import sphinx  # noqa: F401
    except ImportError:
        raise RuntimeError("building the site needs sphinx and myst-nb: pip install -e \".[dev]\".") from None
    src = Path(source) if source else source_dir()
    readme = Path(readme) if readme else src.parent / "README.md"
    executed, out = Path(executed), Path(out)
    pages = []
    for path in sorted(src.glob("[0-9][0-9]_*.ipynb")):
        done = executed / path.name
        if not done.exists():
            raise FileNotFoundError(f"{done} is missing: run `make test` first (it executes the notebooks and keeps "
                                    f"them in {executed}).")
        nb = nbformat.read(done, as_version=4)
        if not _current(nb, nbformat.read(path, as_version=4)):
            raise ValueError(f"{done} was executed from an older {path}: run `make test` again.")
        pages.append((path.name, site_notebook(nb, version)))
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".site.", dir=out.parent))
    try:
        (work / "src" / "_static").mkdir(parents=True)
        (work / "src" / "conf.py").write_text(CONF_PY)
        (work / "src" / "_static" / "colab-badge.svg").write_text(BADGE_SVG)
        for name, nb in pages:
            nbformat.write(nb, work / "src" / name)
        toc = "\n".join(Path(name).stem for name, _ in pages)
        body = _readme_page(readme.read_text()) if readme.exists() else "# sslkit\n"
        title, _, rest = body.partition("\n")
        (work / "src" / "index.md").write_text(f"{title}\n\n```{{toctree}}\n:maxdepth: 1\n:caption: The notebooks\n\n"
                                               f"{toc}\n```\n{rest}")
        proc = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", str(work / "src"), str(work / "html")],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"sphinx could not build the site: {(proc.stderr or proc.stdout).strip().splitlines()[-1]}")
        if out.exists():
            shutil.rmtree(out)
        (work / "html").rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out / "index.html"
