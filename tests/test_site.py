"""The course website: built from executed notebooks (never re-run), opened in headless Chromium:
every page loads, every image is there, every internal link resolves."""

from __future__ import annotations

import html
import os
import re
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
        "00_intro.ipynb": [nbformat.v4.new_markdown_cell("# 00 · Intro\n\nSee [the next one](01_more.ipynb): "
                                                         "$\\mathrm{sim}(u, v) = u^\\top v$, and\n\n"
                                                         "$$\\ell_{i,j} = -\\log \\frac{e^{s_{ij}}}{\\sum_k e^{s_{ik}}}$$"),
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


# Run in the page once MathJax has typeset it (or at once where the page has no formula):
# [formulas typeset, formulas left as raw TeX, MathJax's own error boxes, raw TeX outside code].
MATH_STATE = r"""async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  const math = [...document.querySelectorAll('.math')];
  const raw = math.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.trim().slice(0, 60));
  const walker = document.createTreeWalker(document.querySelector('main') || document.body, NodeFilter.SHOW_TEXT);
  const loose = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.parentElement.closest('pre, code, script, style, .math, mjx-container')) continue;
    if (/\\\(|\\\[|\$\$|\\begin\{/.test(n.textContent)) loose.push(n.textContent.trim().slice(0, 60));
  }
  return [document.querySelectorAll('mjx-container').length, raw, document.querySelectorAll('mjx-merror').length, loose];
}"""


def _math_problems(page, doc: Path, problems: list) -> int:
    """Every formula on the page typeset by the site's own MathJax; returns how many there are."""
    typeset, raw, errors, loose = page.evaluate(MATH_STATE)
    if raw or loose:
        problems.append(f"{doc.name}: formulas shown as raw TeX: {(raw + loose)[:3]}")
    if errors:
        problems.append(f"{doc.name}: MathJax reports {errors} error(s)")
    return typeset


def check_site(site: Path) -> dict:
    """Open every page of ``site`` in headless Chromium, with no network; returns what was checked.
    Fails on a page that does not load, an image that is missing or empty, an internal link to
    nothing, a formula left as raw TeX or a MathJax error."""
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
        for doc in pages:
            response = page.goto(doc.as_uri(), wait_until="load")
            if response is None or not response.ok:
                problems.append(f"{doc} did not load")
                continue
            seen["pages"] += 1
            seen["formulas"] = seen.get("formulas", 0) + _math_problems(page, doc, problems)
            ids_cache[doc] = set(page.eval_on_selector_all("[id]", "els => els.map(e => e.id)"))
            for src, ok in page.eval_on_selector_all(
                    "img", "els => els.map(e => [e.getAttribute('src'), e.complete && e.naturalWidth > 0])"):
                seen["images"] += 1
                if not ok:
                    problems.append(f"{doc.name}: image {src} is missing")
            for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
                url, fragment = urldefrag(href)
                if not url.startswith("file:"):
                    continue
                seen["links"] += 1
                target = Path(urlparse(url).path)
                if not target.exists():
                    problems.append(f"{doc.name}: link to {href} leads nowhere")
                elif fragment and target.suffix == ".html":
                    if target not in ids_cache:
                        other = browser.new_page()
                        other.goto(target.as_uri())
                        ids_cache[target] = set(other.eval_on_selector_all("[id]", "els => els.map(e => e.id)"))
                        other.close()
                    if fragment not in ids_cache[target]:
                        problems.append(f"{doc.name}: link to #{fragment} in {target.name} finds no such anchor")
        browser.close()
    assert not problems, problems
    return seen


def check_book(site: Path, notebooks: list[str]) -> None:
    """What a student uses on a notebook's page, in both versions: the sidebar in course order, the
    launch buttons (Colab, Kaggle), the download of the notebook (a file the site carries, offline),
    the copy button on code, the link to the other version; and search from file://."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
        for version, other in (("student", "instructor"), ("instructor", "student")):
            first = site / version / f"{notebooks[0]}.html"
            page.goto(first.as_uri(), wait_until="load")
            sidebar = page.eval_on_selector_all("nav.bd-links a", "els => els.map(e => e.href.split('#')[0])")
            order = [next((i for i, h in enumerate(sidebar) if h.endswith(f"/{version}/{nb}.html")), -1) for nb in notebooks]
            assert -1 not in order and order == sorted(order), f"{version}: the sidebar lists {sidebar}"
            launch = page.eval_on_selector_all(".dropdown-launch-buttons a", "els => els.map(e => e.href)")
            assert any(h.startswith("https://colab.research.google.com/github/") and h.endswith(f"notebooks/{notebooks[0]}.ipynb")
                       for h in launch) and any("kaggle.com" in h for h in launch), launch
            download = page.eval_on_selector("a.btn-download-source-button",
                                             "e => [e.getAttribute('href'), e.getAttribute('download')]")
            assert download[0].endswith(f"{notebooks[0]}.ipynb") and download[1] == f"{notebooks[0]}.ipynb", download
            saved = nbformat.reads((first.parent / download[0]).resolve().read_text(), as_version=4)
            assert any(c.cell_type == "code" for c in saved.cells)
            with page.expect_download() as got:
                page.evaluate("() => document.querySelector('a.btn-download-source-button').click()")
            assert got.value.suggested_filename == f"{notebooks[0]}.ipynb"
            assert page.locator("div.cell_input button.copybtn").count() >= 1, "no copy button on the code cells"
            switch = page.eval_on_selector("a.sslkit-switch", "e => e.href")
            assert switch.endswith(f"{other}/{notebooks[0]}.html"), switch
        page.goto((site / "search.html").as_uri() + "?q=notebooks", wait_until="load")
        page.wait_for_selector("#search-results li", timeout=20_000)
        browser.close()


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
    assert seen["pages"] >= 6 and seen["images"] >= 8 and seen["links"] >= 8 and seen["formulas"] >= 4, seen
    check_book(index.parent, ["00_intro", "01_more"])
    text = lambda page: html.unescape(re.sub(r"<[^>]+>", "", (tmp_path / "site" / page).read_text()))  # as shown
    more = text("student/01_more.html")
    assert course.WIDGET_NOTE.split(":")[0] in more            # the widget became its figure and a note
    assert "my_nt_xent" in more and "YOUR CODE HERE" in more   # the student's page: no solution, no output
    assert "Right:" not in more and "F.cross_entropy(sim" not in more
    solved = text("instructor/01_more.html")
    assert "F.cross_entropy(sim" in solved and "YOUR CODE HERE" not in solved
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
    names = sorted(p.stem for p in course.source_dir().glob("[0-9][0-9]_*.ipynb"))
    for version in course.VERSIONS:
        assert set(names) <= {p.stem for p in (site / version).glob("*.html")}, version
    assert seen["images"] >= 6 * len(names), seen
    assert seen["formulas"] >= 20, seen                   # NT-Xent, InfoNCE, the BYOL and MAE losses, ...
    check_book(site, names)
    screenshots(site, ["index.html"] + [f"{v}/{nb}.html" for v in course.VERSIONS for nb in names
                                        if nb.startswith(("03_", "06_"))])


def screenshots(site: Path, pages: list[str], widths=(1280, 390)) -> None:
    """The pages as a person sees them, on a laptop and on a phone, kept in test-artifacts/site/ to
    look at (the tests above check what a program can; layout and legibility need eyes)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    out = ROOT / "test-artifacts" / "site"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for width in widths:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
            for name in pages:
                page.goto((site / name).as_uri(), wait_until="load")
                page.evaluate("async () => { if (window.MathJax && MathJax.startup) await MathJax.startup.promise; }")
                page.screenshot(path=out / f"{name.replace('/', '_').removesuffix('.html')}_{width}.png")
            page.close()
        browser.close()


def test_the_repository_address_is_one_setting_and_its_placeholder_is_said_once(capsys, monkeypatch):
    """Badges, install cells and the site's buttons read pyproject.toml's [project.urls] Repository."""
    import tomllib
    repo = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    assert course.repository_address() == course.SSLKIT_REPO == repo
    assert course.colab_url("03_simclr.ipynb").startswith(f"https://colab.research.google.com/github/{repo.split('github.com/')[1]}/")
    assert f"git+{repo}" in course.install_cell_source()
    monkeypatch.setattr(course, "_warned", False)
    assert course.warn_if_placeholder("https://github.com/YOUR-ORG/sslkit") and course.warn_if_placeholder("https://github.com/YOUR-ORG/sslkit")
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "[project.urls]" in err and "course stamp" in err
    assert not course.warn_if_placeholder("https://github.com/someone/sslkit") and not capsys.readouterr().err
