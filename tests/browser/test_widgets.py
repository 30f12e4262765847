"""The explorers as a student meets them: each notebook with widgets run in JupyterLab under headless
Chromium, every control of every explorer moved, and the explorer's picture compared before and after.

Widgets are found in the page (any widget output holding an ``Output`` area and controls), not by
cell index, so new cells and new notebooks are covered as they come. Screenshots of every explorer
before and after each move go to ``test-artifacts/browser/<notebook>/``.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import time
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

# a notebook run on the quick profile, training included when the cache is cold, on a busy CPU
RUN_TIMEOUT_S = 1200
# one redraw after a control moved (the rotation and mask explorers run a model forward)
REDRAW_TIMEOUT_S = 90

# what a widget looks like where the front end is missing: its Python repr as text
# (or sslkit.widgets.Explorer's note in its place)
WIDGET_AS_TEXT = re.compile(r"^\s*((\w+\.)*[A-Z]\w*\((children|value|description|layout|options)=|"
                            r"\(Interactive controls need a widget front end)")
CONTROLS = ".widget-slider, .widget-dropdown, .widget-checkbox, .widget-toggle-buttons, .widget-select-multiple"


def _widget_notebooks() -> list[str]:
    """The notebooks whose code uses ipywidgets (through sslkit.widgets or directly)."""
    names = []
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        if re.search(r"from sslkit\.widgets import|import ipywidgets|from ipywidgets import", code):
            names.append(path.name)
    return names


def _png(element) -> bytes:
    return element.screenshot(animations="disabled", caret="hide")


def _same_picture(a: bytes, b: bytes) -> bool:
    from PIL import Image, ImageChops

    ia, ib = Image.open(io.BytesIO(a)).convert("RGB"), Image.open(io.BytesIO(b)).convert("RGB")
    return ia.size == ib.size and ImageChops.difference(ia, ib).getbbox() is None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "control"


# ------------------------------------------------------------------------------- the notebook

def _run_all(page, lab: dict, name: str) -> None:
    # a workspace of its own per notebook: JupyterLab restores the last workspace's open tabs, and
    # the earlier notebooks' hidden panels would otherwise answer the selectors below
    workspace = _slug(Path(name).stem)
    page.goto(f"{lab['url']}/lab/workspaces/{workspace}/tree/{name}?reset&token={lab['token']}")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
    # the kernel's status in the status bar reads "Idle" only once the kernel is connected
    page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\| Idle$")).first.wait_for(timeout=120_000)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    page.wait_for_function("() => !/\\[ \\]/.test(document.querySelector('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt').textContent)",
                           timeout=60_000)
    # done when no cell is queued or running: all ran, or an error cancelled the rest
    page.wait_for_function(
        """() => ![...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')]
                     .some(p => p.textContent.includes('*'))""",
        timeout=RUN_TIMEOUT_S * 1000, polling=1000)
    # widget views render after their cell finished
    page.wait_for_function("() => !document.body.innerText.includes('Loading widget...')", timeout=60_000)


def _problems_in_page(page) -> list[str]:
    """Errors, stderr, widgets shown as text and labels cut short, anywhere in the notebook."""
    return page.evaluate(
        """(widgetAsText) => {
            const re = new RegExp(widgetAsText);
            const problems = [];
            const cellOf = el => {
                const cell = el.closest('.jp-CodeCell');
                const prompt = cell && cell.querySelector('.jp-InputArea-prompt');
                return prompt ? `cell ${prompt.textContent.trim()}` : 'a cell';
            };
            for (const el of document.querySelectorAll('.jp-Notebook .jp-OutputArea-output')) {
                const mime = el.getAttribute('data-mime-type') || '';
                const text = el.innerText.trim();
                if (mime.endsWith('.error') || mime.endsWith('.stderr'))
                    problems.push(`${cellOf(el)} shows ${mime.split('.').pop()} (an error or a warning): ${text.slice(0, 300)}`);
                else if (mime === 'text/plain' && re.test(text))
                    problems.push(`${cellOf(el)} shows a widget as text (no widget front end?): ${text.slice(0, 120)}`);
                else if (/Error displaying widget/.test(text))
                    problems.push(`${cellOf(el)}: ${text.slice(0, 200)}`);
            }
            for (const el of document.querySelectorAll('.jp-Notebook :is(.widget-label, .widget-label-basic span, .widget-readout)')) {
                if (el.offsetParent !== null && el.scrollWidth > el.clientWidth + 1)
                    problems.push(`${cellOf(el)}: the label "${el.textContent.trim()}" is cut short ` +
                                  `(${el.clientWidth} px shown of ${el.scrollWidth})`);
            }
            return problems;
        }""", WIDGET_AS_TEXT.pattern)


def _explorers(page) -> list[tuple[str, object]]:
    """``(name, locator)`` of every explorer: a widget output with an Output area and controls,
    named after the function its cell calls (``augmentation_explorer``), numbered when repeated."""
    # an output area holding a widget view, not itself inside a widget
    roots = page.locator(".jp-Notebook .jp-OutputArea-output:has(> .jupyter-widgets):not(.jupyter-widgets *)")
    found = []
    for i in range(roots.count()):
        root = roots.nth(i)
        if root.locator(".widget-output").count() == 0 or root.locator(CONTROLS).count() == 0:
            continue                           # a progress bar, or a widget without a picture
        source = root.locator("xpath=ancestor::div[contains(@class, 'jp-CodeCell')]").locator(".cm-content").inner_text()
        calls = re.findall(r"(\w+)\s*\(", source)
        found.append((next((c for c in reversed(calls) if c.endswith(("_explorer", "_viewer"))), "widget"), root))
    names = [n for n, _ in found]
    return [(f"{n}-{names[:k + 1].count(n)}" if names.count(n) > 1 else n, root)
            for k, (n, root) in enumerate(found)]


# ------------------------------------------------------------------------------ the controls

def _control_name(control) -> str:
    """The control's description (a checkbox's is beside the box, not in its label)."""
    texts = control.locator(".widget-label, .widget-label-basic").all_inner_texts()
    return next((t.strip() for t in texts if t.strip("\u200b \n")), "control")


def _value(control) -> str:
    return control.evaluate(
        """c => {
            const r = c.querySelector('.widget-readout'); if (r) return r.textContent;
            const s = c.querySelector('select');
            if (s) return [...s.selectedOptions].map(o => o.value).join(',');
            const b = c.querySelector('input[type=checkbox]'); if (b) return String(b.checked);
            const t = c.querySelector('button.mod-active'); if (t) return t.textContent;
            return '';
        }""")


def _move(page, control) -> None:
    """Move a control as a person would: drag a slider's handle, pick another option, tick a box."""
    cls = control.get_attribute("class") or ""
    if "widget-slider" in cls:
        handle = control.locator(".noUi-handle").first
        track = control.locator(".noUi-target").first
        h, t = handle.bounding_box(), track.bounding_box()
        x0, y = h["x"] + h["width"] / 2, h["y"] + h["height"] / 2
        # a third of the way from the far end: a clear change whatever the value is now
        x1 = t["x"] + t["width"] * (0.7 if x0 < t["x"] + t["width"] / 2 else 0.3)
        page.mouse.move(x0, y)
        page.mouse.down()
        page.mouse.move(x1, y, steps=8)
        page.mouse.up()
    elif "widget-dropdown" in cls:
        select = control.locator("select")
        options = select.locator("option")
        current = select.evaluate("s => s.selectedIndex")
        select.select_option(index=(current + 1) % options.count())
    elif "widget-select-multiple" in cls:       # one option fewer (or all, when one is chosen)
        select = control.locator("select")
        values = select.evaluate("s => [...s.options].map(o => o.value)")
        chosen = select.evaluate("s => [...s.selectedOptions].map(o => o.value)")
        select.select_option(chosen[:-1] if len(chosen) > 1 else values)
    elif "widget-checkbox" in cls:
        control.locator("input[type=checkbox]").click()
    else:                                     # toggle buttons: the next one
        buttons = control.locator("button")
        active = next(i for i in range(buttons.count()) if "mod-active" in (buttons.nth(i).get_attribute("class") or ""))
        buttons.nth((active + 1) % buttons.count()).click()


def _settled_picture(output, before: bytes, timeout_s: float) -> bytes | None:
    """The output area's picture once it differs from ``before`` and stopped changing; None if it
    never changed within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        now = _png(output)
        images = output.locator("img").count()
        if last is not None and images and _same_picture(now, last) and not _same_picture(now, before):
            return now
        last = now
        time.sleep(0.5)
    return None


# --------------------------------------------------------------------------------- the test

@pytest.mark.parametrize("notebook", _widget_notebooks())
def test_explorers_redraw_when_moved(page, lab, artifacts, notebook):
    """Every control of every explorer changes the explorer's picture, and no cell shows an error,
    stderr, a widget as text or a label cut short."""
    shots = artifacts / Path(notebook).stem
    shutil.rmtree(shots, ignore_errors=True)      # no screenshot left from an earlier run
    shots.mkdir(parents=True)
    try:
        _check_explorers(page, lab, notebook, shots)
    except BaseException:
        page.screenshot(path=shots / "failure.png", full_page=True)   # the notebook as it was
        raise


def _check_explorers(page, lab: dict, notebook: str, shots: Path) -> None:
    _run_all(page, lab, notebook)
    problems = _problems_in_page(page)
    explorers = _explorers(page)
    assert explorers, f"{notebook} uses widgets but no explorer rendered in JupyterLab"
    for name, root in explorers:
        output = root.locator(".widget-output").first
        if output.locator("img").count() == 0:
            problems.append(f"{name} shows no picture after its cell ran")
            continue
        controls = root.locator(CONTROLS)
        for i in range(controls.count()):
            control = controls.nth(i)
            label = _control_name(control)
            stem = shots / f"{name}--{_slug(label)}"
            root.screenshot(path=f"{stem}--before.png")
            before, value = _png(output), _value(control)
            n_images = output.locator("img").count()
            _move(page, control)
            if _value(control) == value:
                problems.append(f"{name}: moving '{label}' did not change its value ({value})")
                continue
            after = _settled_picture(output, before, REDRAW_TIMEOUT_S)
            root.screenshot(path=f"{stem}--after.png")
            if after is None:
                problems.append(f"{name}: the picture did not change within {REDRAW_TIMEOUT_S} s after "
                                f"'{label}' went from {value} to {_value(control)}")
            elif output.locator("img").count() != n_images:
                problems.append(f"{name}: '{label}' left {output.locator('img').count()} pictures where "
                                f"there were {n_images} (figures piling up instead of redrawing)")
    problems += _problems_in_page(page)
    assert not problems, f"{notebook}:\n" + "\n".join(dict.fromkeys(problems))


def test_the_dino_notebooks_attention_explorer_is_driven_here():
    """Notebook 10's attention explorer (block and head sliders) is one of the explorers the test
    above runs in JupyterLab and moves: its notebook imports sslkit.widgets."""
    assert "10_dino.ipynb" in _widget_notebooks()
    cells = json.loads((NOTEBOOKS / "10_dino.ipynb").read_text())["cells"]
    assert any("attention_explorer(" in "".join(c["source"]) for c in cells if c["cell_type"] == "code")
