"""The course from one source: student and instructor notebooks, hosted-service cells, the site's pages.

The notebooks in ``notebooks/`` are the instructor version: every coding exercise's solution sits
between nbgrader's delimiters (``### BEGIN SOLUTION`` / ``### END SOLUTION``) in a cell with nbgrader
metadata, and each check cell may hold ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS`` for
autograding. The student version replaces every solution by nbgrader's own placeholder
(``raise NotImplementedError()``, which the checks report as "not done yet"), drops the hidden tests
and clears the outputs; instructors who grade with nbgrader can use the source notebooks as they are.

Every notebook starts with an "Open in Colab" badge and an install cell (:func:`stamp_hosted`),
both made from :data:`SSLKIT_REPO`, read from the one setting that names the repository
(:func:`repository_address`: pyproject.toml's ``[project.urls] Repository``); so are the site's buttons.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import nbformat

PLACEHOLDER_REPO = "https://github.com/YOUR-ORG/sslkit"
SSLKIT_BRANCH = "main"


def repository_address() -> str:
    """The repository that the badges, the install cells and the site's buttons point to, from its one
    setting: ``Repository`` under ``[project.urls]`` in the checkout's pyproject.toml (the installed
    package's metadata where there is no checkout). After changing it, run ``python -m sslkit course stamp``."""
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if pyproject.exists():
        text = pyproject.read_text()
        try:
            import tomllib
            return tomllib.loads(text).get("project", {}).get("urls", {}).get("Repository", PLACEHOLDER_REPO)
        except ImportError:                        # Python 3.10: the one line is enough
            m = re.search(r'^Repository\s*=\s*"([^"]+)"', text, re.M)
            return m.group(1) if m else PLACEHOLDER_REPO
    from importlib import metadata
    try:
        urls = metadata.metadata("sslkit").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        urls = []
    return next((u.split(",", 1)[1].strip() for u in urls if u.split(",")[0].strip() == "Repository"), PLACEHOLDER_REPO)


SSLKIT_REPO = repository_address()
_warned = False


def warn_if_placeholder(repo: str | None = None) -> bool:
    """Say once per process, on stderr, that the address is still the placeholder; True if it is."""
    global _warned
    repo = repo or SSLKIT_REPO
    if "YOUR-ORG" not in repo:
        return False
    if not _warned:
        import sys
        print(f"warning: the repository address is still the placeholder {repo}, so every Colab button and "
              f"install cell points nowhere: set Repository under [project.urls] in pyproject.toml to the "
              f"published repository, then run `python -m sslkit course stamp`.", file=sys.stderr)
        _warned = True
    return True

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
        raise ValueError(f"the repository address (Repository under [project.urls] in pyproject.toml) must be a GitHub "
                         f"address like https://github.com/OWNER/NAME, got {repo}.")
    return f"https://colab.research.google.com/github/{m.group(1)}/blob/{branch}/notebooks/{notebook}"


def kaggle_url(notebook: str, repo: str = SSLKIT_REPO, branch: str = SSLKIT_BRANCH) -> str:
    """Kaggle's address that imports ``notebooks/<notebook>`` of the repository."""
    colab_url(notebook, repo, branch)                  # the same check of the address
    return f"https://kaggle.com/kernels/welcome?src={repo.rstrip('/')}/blob/{branch}/notebooks/{notebook}"


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
    warn_if_placeholder()
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
# The site's formulas are typeset by this MathJax, which the set-up installs from the npm registry
# into the virtual environment (`make .venv/.installed`), and the site carries it: no CDN, so the
# math renders offline (file://, a train, a locked-down lab).
MATHJAX_VERSION = "3.2.2"
VERSIONS = ("student", "instructor")
INSTRUCTOR_INDEX = """# Notebooks with solutions

The same notebooks as the students', with each coding exercise's solution and hidden test in place
(the notebooks in `notebooks/` of the repository, as nbgrader reads them) and every output. The
button at the top of each page leads to its student version and back.

```{{toctree}}
:maxdepth: 1

{toc}
```
"""
SITE_CSS = """/* sslkit's course site on sphinx-book-theme. A wide column, so that code cells (a tenth of their
   lines over 110 characters) rarely scroll sideways: below 1600 px the page's contents move from the
   right-hand column into the theme's own drawer (its "contents" button, as on small screens). */
.bd-page-width { max-width: 100rem; }
@media (min-width: 1200px) and (max-width: 1599.98px) {
  #pst-secondary-sidebar { display: none; }
  .bd-main .bd-content .bd-article-container { max-width: 100%; }
  button.sidebar-toggle.secondary-toggle { display: flex; }
}
/* the line above a notebook's title: which version this is, and the way to the other */
p.sslkit-version { font-size: .9rem; padding: .4rem .75rem; border-radius: .25rem; margin-bottom: 1rem;
  background: var(--pst-color-surface); border-left: 4px solid var(--pst-color-primary); }
p.sslkit-version.sslkit-instructor { border-left-color: var(--pst-color-warning); }
p.sslkit-version a { white-space: nowrap; font-weight: 600; }
@media (max-width: 575.98px) { .bd-article h1 { font-size: 1.9rem; } .bd-article h2 { font-size: 1.5rem; } }
"""


# The theme's ".ipynb" button opens the notebook as JSON text in a new tab, and from file:// Chromium
# ignores a link's `download` attribute. So the click loads the notebook through a <script> (which
# file:// allows, unlike fetch) from the copy `build_site` writes beside it (<name>.ipynb.js), and
# saves it as a file named after the notebook: the same download online, offline and from file://.
SITE_JS = """document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("a.btn-download-source-button").forEach((a) => {
    const href = a.getAttribute("href");
    if (!href.endsWith(".ipynb")) return;
    const name = href.split("/").pop();
    a.setAttribute("download", name);
    a.removeAttribute("target");
    a.addEventListener("click", (event) => {
      event.preventDefault();
      const script = document.createElement("script");
      script.src = href + ".js";
      script.onload = () => {
        const url = URL.createObjectURL(new Blob([window.sslkitNotebook], {type: "application/x-ipynb+json"}));
        const save = document.createElement("a");
        save.href = url; save.download = name;
        document.body.appendChild(save); save.click(); save.remove();
        setTimeout(() => URL.revokeObjectURL(url), 1000);
        script.remove();
      };
      document.head.appendChild(script);
    });
  });
});
"""


def mathjax_dir() -> Path:
    """Where the set-up installed MathJax: ``$SSLKIT_MATHJAX``, else ``<environment>/mathjax/node_modules/mathjax``."""
    import os
    import sys
    return Path(os.environ.get("SSLKIT_MATHJAX") or Path(sys.prefix) / "mathjax" / "node_modules" / "mathjax")


def _mathjax() -> Path:
    """The installed MathJax's ``es5`` folder, checked against :data:`MATHJAX_VERSION`."""
    root = mathjax_dir()
    install = (f"run `make .venv/.installed`, or `npm install --prefix {root.parent.parent} "
               f"mathjax@{MATHJAX_VERSION}` (or point SSLKIT_MATHJAX at an unpacked mathjax {MATHJAX_VERSION} package)")
    try:
        found = json.loads((root / "package.json").read_text()).get("version")
    except (OSError, ValueError):
        raise RuntimeError(f"the site's formulas need MathJax {MATHJAX_VERSION}, which is not in {root}: {install}.") from None
    if found != MATHJAX_VERSION or not (root / "es5" / "tex-mml-chtml.js").exists():
        raise RuntimeError(f"{root} holds MathJax {found}, but the site pins {MATHJAX_VERSION}: {install}.")
    return root / "es5"


def _conf_py(versions, repo: str, branch: str) -> str:
    """The site's conf.py: every value written out, so the build folder shows what made the site."""
    settings = {
        "project": "sslkit",
        "html_title": "sslkit: a course in self-supervised learning",
        "extensions": ["myst_nb", "sphinx_copybutton"],
        "nb_execution_mode": "off",        # never run a notebook here: show the outputs it already has
        "nb_output_stderr": "remove",      # progress bars and warnings are for the live notebook
        "myst_enable_extensions": ["dollarmath", "amsmath"],
        # sphinx-book-theme: the theme of Jupyter Book 1, so of Neuromatch Academy's course that
        # instructors know (launch and download buttons, the book's sidebar), on pydata-sphinx-theme
        "html_theme": "sphinx_book_theme",
        "html_theme_options": {
            "home_page_in_toc": True, "show_navbar_depth": 1, "show_toc_level": 2,
            "repository_url": repo, "repository_branch": branch, "use_repository_button": True,
            "use_download_button": True, "use_fullscreen_button": False,
            "navbar_persistent": [],           # search sits in the sidebar (and Ctrl+K), not in a bar above
        },
        "html_context": {"sslkit_versions": list(versions), "sslkit_repo": repo, "sslkit_branch": branch},
        "html_static_path": ["_static"],
        "html_css_files": ["sslkit.css"],
        "html_js_files": ["sslkit.js"],
        "html_sourcelink_suffix": "",      # _sources/<page>.ipynb is the download, a notebook as it is
        "mathjax_path": "mathjax/tex-mml-chtml.js",   # relative to _static: the copy the site carries
        # the copy button on code, not on outputs
        "copybutton_selector": "div.cell_input div.highlight pre, div.highlight-bash div.highlight pre, "
                               "div.highlight-python div.highlight pre",
        "exclude_patterns": ["_build"],
    }
    lines = ["# Written by `python -m sslkit course site`; the pages are notebooks that `make test` executed."]
    lines += [f"{k} = {v!r}" for k, v in settings.items()]
    lines += ["from sslkit.course import sphinx_setup as setup   # the Colab / Kaggle buttons, the version switch"]
    return "\n".join(lines) + "\n"


def sphinx_setup(app) -> None:
    """The site's own Sphinx hooks (its conf.py's ``setup``)."""
    # the launch buttons after sphinx-book-theme (priority 501) made its list of header buttons
    app.connect("html-page-context", _version_switch)
    app.connect("html-page-context", _launch_buttons, priority=502)


def _notebook_page(pagename: str):
    """``(version, stem)`` for a notebook's page (``student/03_simclr``), else None."""
    version, _, stem = pagename.partition("/")
    return (version, stem) if version in VERSIONS and re.match(r"\d\d_", stem) else None


def _launch_buttons(app, pagename, templatename, context, doctree) -> None:
    """On a notebook's page: "launch" (Colab, Kaggle) with the repository's copy of the notebook."""
    page = _notebook_page(pagename)
    if page is None:
        return
    info = app.config.html_context
    repo, branch, notebook = info["sslkit_repo"], info["sslkit_branch"], f"{page[1]}.ipynb"
    launch = [{"type": "link", "text": "Colab", "tooltip": "Open this notebook in Colab", "label": "launch-colab-button",
               "icon": "_static/images/logo_colab.png", "url": colab_url(notebook, repo, branch)},
              {"type": "link", "text": "Kaggle", "tooltip": "Open this notebook in Kaggle",
               "label": "launch-kaggle-button", "icon": "fab fa-kaggle", "url": kaggle_url(notebook, repo, branch)}]
    context.setdefault("header_buttons", []).insert(0, {"type": "group", "tooltip": "Open this notebook in Colab or Kaggle",
                                                        "icon": "fas fa-rocket", "buttons": launch, "label": "launch-buttons"})


def _version_switch(app, pagename, templatename, context, doctree) -> None:
    """On a notebook's page: a line above the title that says which version it is, with the link to
    the same page in the other version (in the page's HTML, not in its notebook: the download stays
    a plain notebook)."""
    page = _notebook_page(pagename)
    if page is None:
        return
    import html

    version, stem = page
    if version == "instructor":
        context["title"] = f"{context.get('title', '')} (instructor version)"
    here = {"student": "Student version: the exercises without their solutions.",
            "instructor": "Instructor version: every solution and hidden test in place."}[version]
    others = [v for v in app.config.html_context["sslkit_versions"] if v != version]
    link = ""
    if others:
        other = others[0]
        text = "This page with the solutions" if other == "instructor" else "This page as the students get it"
        link = (f' <a class="sslkit-switch" href="{html.escape(context["pathto"](f"{other}/{stem}"))}">'
                f'{text} <i class="fa-solid fa-arrow-right"></i></a>')
    context["body"] = f'<p class="sslkit-version sslkit-{version}">{here}{link}</p>\n' + context.get("body", "")


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
        if cell.cell_type == "markdown":      # a path from the site's root: pages sit one folder down
            cell.source = cell.source.replace(REMOTE_BADGE, "/_static/colab-badge.svg")
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_MIME in data:
                del data[WIDGET_MIME]
                data["text/plain"] = WIDGET_NOTE
                data["text/markdown"] = f"*{WIDGET_NOTE}*"     # a paragraph that wraps, on a phone too
    return nb


def _readme_page(readme: str, pages: str = "student") -> str:
    """The README as the site's front page: notebook links point at the pages (in folder ``pages``),
    other relative links at the repository."""
    text = re.sub(r"\]\(notebooks/([\w.-]+)\.ipynb\)", rf"]({pages}/\1.ipynb)", readme)
    text = re.sub(r"\]\((?!https?:|#|mailto:|_static/|student/|instructor/)([^)\s]+)\)",
                  lambda m: f"]({SSLKIT_REPO}/blob/{SSLKIT_BRANCH}/{m.group(1)})",
                  text.replace(f"]({REMOTE_BADGE})", "](_static/colab-badge.svg)"))
    return text


def build_site(executed: str | Path = EXECUTED_DIR, out: str | Path = SITE_DIR, source: str | Path | None = None,
               readme: str | Path | None = None, version: str = "both") -> Path:
    """Build the course website (Sphinx + myst-nb, sphinx-book-theme, MathJax carried by the site)
    from the notebooks that the tests executed; all or nothing. ``version``: ``both`` (the student
    pages in ``student/``, the instructor pages in ``instructor/``, each page linked to its twin),
    ``student`` or ``instructor``. Returns the site's index.html."""
    import subprocess
    import sys

    if version not in ("both", *VERSIONS):
        raise ValueError(f"unknown site version '{version}': use both, student or instructor.")
    versions = VERSIONS if version == "both" else (version,)
    try:
        import myst_nb  # noqa: F401
        import sphinx  # noqa: F401
        import sphinx_book_theme  # noqa: F401
        import sphinx_copybutton  # noqa: F401
    except ImportError as e:
        raise RuntimeError(f"building the site needs {e.name} (with sphinx, myst-nb, sphinx-book-theme and "
                           f"sphinx-copybutton): pip install -e \".[dev]\".") from None
    es5 = _mathjax()
    warn_if_placeholder()
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
        pages.append((path.name, nb))
    if not pages:
        raise FileNotFoundError(f"no course notebooks (NN_name.ipynb) in {src}.")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".site.", dir=out.parent))
    try:
        root = work / "src"
        root.mkdir()
        (root / "conf.py").write_text(_conf_py(versions, SSLKIT_REPO, SSLKIT_BRANCH))
        # MathJax without what the site does not load (its SVG output, the other combined bundles)
        shutil.copytree(es5, root / "_static" / "mathjax", ignore=lambda d, names: [
            n for n in names if n == "svg" or n == "svg.js" or (Path(d) == es5 and n.endswith(".js")
                                                                 and n not in ("tex-mml-chtml.js",))])
        (root / "_static" / "colab-badge.svg").write_text(BADGE_SVG)
        (root / "_static" / "sslkit.css").write_text(SITE_CSS)
        (root / "_static" / "sslkit.js").write_text(SITE_JS)
        toc = "\n".join(Path(name).stem for name, _ in pages)
        for v in versions:
            (root / v).mkdir()
            for name, nb in pages:
                nbformat.write(site_notebook(nb, v), root / v / name)
        if "instructor" in versions:
            (root / "instructor" / "index.md").write_text(INSTRUCTOR_INDEX.format(toc=toc))
        toctrees = ""
        if "student" in versions:
            toctrees += "```{toctree}\n:maxdepth: 1\n:caption: The notebooks\n\n" + \
                "\n".join(f"student/{Path(n).stem}" for n, _ in pages) + "\n```\n\n"
        if "instructor" in versions:
            toctrees += "```{toctree}\n:maxdepth: 1\n:caption: For instructors\n\ninstructor/index\n```\n"
        body = _readme_page(readme.read_text(), versions[0]) if readme.exists() else "# sslkit\n"
        title, _, rest = body.partition("\n")
        (root / "index.md").write_text(f"{title}\n\n{toctrees}\n{rest}")
        proc = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", str(root), str(work / "html")],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"sphinx could not build the site: {(proc.stderr or proc.stdout).strip().splitlines()[-1]}")
        for notebook in (work / "html" / "_sources").rglob("*.ipynb"):   # what the download button saves
            (notebook.parent / f"{notebook.name}.js").write_text(
                f"window.sslkitNotebook = {json.dumps(notebook.read_text())};\n")
        if out.exists():
            shutil.rmtree(out)
        (work / "html").rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out / "index.html"
