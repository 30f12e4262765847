"""The course website: built from executed notebooks (never re-run), opened in headless Chromium:
every page loads, every image is there, every internal link resolves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import nbformat
import pytest

from sslkit import course

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("SSLKIT_CHROMIUM", "/usr/bin/chromium")

FIGURE = """import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(3, 2))
ax.plot([0, 1, 2], [2, 0, 1])
plt.show()"""
WIDGET = """import ipywidgets as W
from IPython.display import display
import matplotlib.pyplot as plt
out = W.Output()
with out:
    plt.plot([1, 2]); plt.show()
W.VBox([W.IntSlider(), out])"""


def _tiny_course(folder: Path) -> Path:
    """Two small notebooks shaped like the course's: a title, the hosted cells, a figure, a widget,
    an exercise block with its solution."""
    src = folder / "notebooks"
    src.mkdir(parents=True)
    exercise = course.solutions()["nt_xent"]
    for name, cells in {
        "00_intro.ipynb": [nbformat.v4.new_markdown_cell("# 00 · Intro\n\nSee [the next one](01_more.ipynb)."),
                           nbformat.v4.new_code_cell(FIGURE)],
        "01_more.ipynb": [nbformat.v4.new_markdown_cell("# 01 · More\n\n## A widget"), nbformat.v4.new_code_cell(WIDGET),
                          nbformat.v4.new_markdown_cell(course.EXERCISE_HEADING + "\n\nWrite it."),
                          nbformat.v4.new_code_cell("import torch\nimport torch.nn.functional as F\n"
                                                    "from sslkit.exercises import check, run_check"),
                          nbformat.v4.new_code_cell(exercise, metadata={"nbgrader": {"solution": True, "grade_id": "nt_xent"}}),
                          nbformat.v4.new_code_cell('check("nt_xent", my_nt_xent)',
                                                    metadata={"nbgrader": {"grade": True, "grade_id": "check_nt_xent"}})],
    }.items():
        nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                           "language": "python"}})
        nbformat.write(course.stamp_hosted(nb, name), src / name)
    (folder / "README.md").write_text(f"# tiny\n\n{course.badge_markdown('00_intro.ipynb')}\n\n"
                                      "[rotation](notebooks/01_more.ipynb) and [results](benchmarks/RESULTS.md)\n")
    return src


def _execute_with_nbval(src: Path, executed: Path) -> None:
    """nbval runs the notebooks and the project's conftest keeps the executed copies (as `make test` does)."""
    env = {**os.environ, "SSLKIT_EXECUTED": str(executed), "MPLBACKEND": "module://matplotlib_inline.backend_inline",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "pytest", str(src), "--nbval-lax", "-q", "-p", "no:cacheprovider",
                           "-p", "conftest", "--rootdir", str(src)], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]


def check_site(site: Path) -> dict:
    """Open every page of ``site`` in headless Chromium; returns what was checked. Fails on a page
    that does not load, an image that is missing or empty, or an internal link to nothing."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set SSLKIT_CHROMIUM)")
    pages = sorted(p for p in site.rglob("*.html") if "_static" not in p.parts)
    seen = {"pages": 0, "images": 0, "links": 0}
    problems = []
    ids_cache: dict[Path, set] = {}
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        # nothing outside the site (MathJax's CDN, fonts): the test runs offline
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                   else route.abort())
        for html in pages:
            response = page.goto(html.as_uri(), wait_until="load")
            if response is None or not response.ok:
                problems.append(f"{html} did not load")
                continue
            seen["pages"] += 1
            ids_cache[html] = set(page.eval_on_selector_all("[id]", "els => els.map(e => e.id)"))
            for src, ok in page.eval_on_selector_all(
                    "img", "els => els.map(e => [e.getAttribute('src'), e.complete && e.naturalWidth > 0])"):
                seen["images"] += 1
                if not ok:
                    problems.append(f"{html.name}: image {src} is missing")
            for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
                url, fragment = urldefrag(href)
                if not url.startswith("file:"):
                    continue
                seen["links"] += 1
                target = Path(urlparse(url).path)
                if not target.exists():
                    problems.append(f"{html.name}: link to {href} leads nowhere")
                elif fragment and target.suffix == ".html":
                    if target not in ids_cache:
                        other = browser.new_page()
                        other.goto(target.as_uri())
                        ids_cache[target] = set(other.eval_on_selector_all("[id]", "els => els.map(e => e.id)"))
                        other.close()
                    if fragment not in ids_cache[target]:
                        problems.append(f"{html.name}: link to #{fragment} in {target.name} finds no such anchor")
        browser.close()
    assert not problems, problems
    return seen


def test_the_site_is_built_from_executed_notebooks_and_browses_cleanly(tmp_path):
    pytest.importorskip("myst_nb")
    src = _tiny_course(tmp_path)
    executed = tmp_path / "executed"
    with pytest.raises(FileNotFoundError, match="run `make test` first"):
        course.build_site(executed, tmp_path / "site", src)
    _execute_with_nbval(src, executed)
    kept = nbformat.read(executed / "00_intro.ipynb", as_version=4)
    assert any("image/png" in o.get("data", {}) for c in kept.cells for o in c.get("outputs", []))

    index = course.build_site(executed, tmp_path / "site", src)
    seen = check_site(index.parent)
    assert seen["pages"] >= 3 and seen["images"] >= 4 and seen["links"] >= 4, seen
    more = (tmp_path / "site" / "01_more.html").read_text()
    assert course.WIDGET_NOTE.split(":")[0] in more            # the widget became its figure and a note
    assert "my_nt_xent" in more and "YOUR CODE HERE" in more   # the student's page: no solution, no output
    assert "Right:" not in more and "F.cross_entropy(sim" not in more
    assert "blob/main/benchmarks/RESULTS.md" in (tmp_path / "site" / "index.html").read_text()

    # a notebook changed since it was executed: the site says so instead of showing old outputs
    nb = nbformat.read(src / "00_intro.ipynb", as_version=4)
    nb.cells[-1].source += "\nprint(1)"
    nbformat.write(nb, src / "00_intro.ipynb")
    with pytest.raises(ValueError, match="executed from an older"):
        course.build_site(executed, tmp_path / "site2", src)
    assert not (tmp_path / "site2").exists()


@pytest.mark.skipif(not os.environ.get("SSLKIT_SITE"), reason="set SSLKIT_SITE=build/site (make site does) to check the built course site")
def test_the_built_course_site():
    site = Path(os.environ["SSLKIT_SITE"]).resolve()      # make site passes it relative to the checkout
    seen = check_site(site)
    names = {p.stem for p in course.source_dir().glob("[0-9][0-9]_*.ipynb")}
    assert names <= {p.stem for p in site.glob("*.html")}
    assert seen["images"] >= 3 * len(names), seen
