"""The live view as a new user meets it in JupyterLab, light and dark, and a saved notebook's HTML.

A notebook of 15 steps (ten side by side, a figure, a failure) runs with Run > Run All
Cells. The test checks what a user sees: the graph fits the output's width, the failed
step's panel opened by itself with the cell's traceback, a click on a node opens that
step's panel, a figure is an ``<img>``, and every text of the view reaches a contrast of
4.5:1 against what is rendered behind it, in JupyterLab's light and dark themes
(computed in the page from the computed colours). Then a notebook run headless with
nbclient, converted to HTML by nbconvert, is opened as a file: its final state shows.

Screenshots go to ``tests/browser/artifacts/<test>/`` (CI keeps them).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.browser.lab import JupyterLab, LabNotebook, chromium_page
from tests.notebook.saved_notebooks import run_headless, to_html

TIMEOUT_MS = 90_000  # generous for a loaded 2-core CI machine; each wait ends as soon as its condition holds
MIN_CONTRAST = 4.5  # WCAG AA for text

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CELLS = [
    "%load_ext flownb",
    "%%step data\nprint('made data')\ndata = list(range(5))",
    *(f"%%step w{i}\nw{i} = sum(data) + {i}" for i in range(10)),
    "%%step plot\nimport matplotlib\nmatplotlib.use('agg')\nfrom matplotlib.figure import Figure\n"
    "fig = Figure(figsize=(5, 2.5))\nfig.add_subplot().plot(data)\nfrom IPython.display import display\n"
    "display(fig)\nplot = 1",
    "%%step boom --on-failure continue\nx = len(data)\nraise ValueError(f'bad row {x}')",
    "%%step total\ntotal = " + " + ".join(f"w{i}" for i in range(10)),
    "view = %flow run",
]

# Every text of the view against what is rendered behind it: [{what, text, ratio}], WCAG contrast ratios.
CONTRAST_JS = r"""
(root) => {
  const ctx = document.createElement("canvas").getContext("2d", { willReadFrequently: true });
  function rgba(str) {
    let m = /^rgba?\(([^)]+)\)$/.exec(str);
    if (m) { const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; }
    m = /^color\(srgb ([^)]+)\)$/.exec(str);
    if (m) { const p = m[1].split(/[\s\/]+/).filter(Boolean).map(Number);
             return [p[0] * 255, p[1] * 255, p[2] * 255, p.length > 3 ? p[3] : 1]; }
    ctx.clearRect(0, 0, 1, 1); ctx.fillStyle = "#000"; ctx.fillStyle = str; ctx.fillRect(0, 0, 1, 1);
    const d = ctx.getImageData(0, 0, 1, 1).data;
    return [d[0], d[1], d[2], d[3] / 255];
  }
  const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat([1]);
  function background(el) {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let bg = [255, 255, 255, 1];
    for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg);
    return bg;
  }
  const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
                       return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const out = [];
  const texts = root.querySelectorAll(
    ".flownb-pill, .flownb-error, .flownb-muted, .flownb-elapsed, .flownb-summary td, .flownb-summary th, " +
    ".widget-html-content b, .widget-html-content code, .jupyter-widget-Collapse-header span, .flownb-graph button");
  for (const el of texts) {
    if (!el.textContent.trim() || !el.getClientRects().length) continue;
    const bg = background(el);
    out.push({ what: el.className || el.tagName, text: el.textContent.trim().slice(0, 40),
               ratio: ratio(over(rgba(getComputedStyle(el).color), bg), bg) });
  }
  for (const t of root.querySelectorAll(".flownb-graph svg g.node text")) {
    const shape = t.parentElement.querySelector("path, polygon, ellipse");
    const behind = over(rgba(getComputedStyle(shape).fill), background(t.closest(".flownb-graph-canvas")));
    out.push({ what: "node " + t.parentElement.getAttribute("class"), text: t.textContent,
               ratio: ratio(over(rgba(getComputedStyle(t).fill), behind), behind) });
  }
  return out;
}
"""


def write_notebook(directory: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "live.ipynb"
    nbformat.write(nb, path)
    return path


def panel(page: Any, scope: Any, title: str) -> Any:
    """The accordion panel in ``scope`` whose header starts with ``title``."""
    header = page.locator(".jupyter-widget-Collapse-header", has_text=re.compile(rf"^{title} ·"))
    return scope.locator(".jupyter-widget-Collapse", has=header)


def check_contrast(output: Any, theme: str) -> list[dict[str, Any]]:
    found = output.evaluate(CONTRAST_JS)
    kinds = {f["what"].split()[0] for f in found}
    # the texts that matter were all measured: statuses, node labels, the summary, the error line
    for needed in ("flownb-pill", "node", "TD", "flownb-error", "flownb-elapsed"):
        assert any(k.startswith(needed) or needed in k for k in kinds), (needed, sorted(kinds))
    low = [f for f in found if f["ratio"] < MIN_CONTRAST]
    worst = min(found, key=lambda f: f["ratio"])
    print(f"{theme}: {len(found)} texts, lowest contrast {worst['ratio']:.2f} ({worst['what']}: {worst['text']!r})")
    assert not low, f"{theme}: texts below {MIN_CONTRAST}:1: {low[:8]}"
    return found


def test_live_view_in_jupyterlab_light_and_dark(chromium: Path, artifacts: Path, tmp_path: Path) -> None:
    nb_path = write_notebook(tmp_path / "notebooks")
    lab = JupyterLab(nb_path.parent, tmp_path, env={"FLOWNB_DB": str(tmp_path / "store.duckdb")})
    with lab, chromium_page(chromium, tmp_path) as page:
        page.set_default_timeout(TIMEOUT_MS)
        notebook = LabNotebook(page, lab, nb_path.name)
        try:
            notebook.open()
            notebook.run_all()
            output = page.locator(".jp-OutputArea-output", has=page.locator(".flownb-graph"))
            output.locator(".widget-html-content", has_text=re.compile(r"run [0-9a-f]+: failed")).wait_for()
            svg = output.locator(".flownb-graph-canvas svg")
            svg.wait_for()
            output.locator(".flownb-summary").wait_for()
            output.evaluate("el => el.scrollIntoView({block: 'start'})")

            # the graph fits the output's width (15 nodes side by side are wider than the page)
            sizes = output.evaluate(
                "el => { const c = el.querySelector('.flownb-graph-canvas'), s = c.querySelector('svg');"
                " return {svg: s.getBoundingClientRect().width, canvas: c.clientWidth, scroll: c.scrollWidth,"
                " output: el.getBoundingClientRect().width, natural: parseFloat(s.getAttribute('viewBox')"
                " .split(/\\s+/)[2]) * 4 / 3}; }"
            )
            assert sizes["natural"] > sizes["output"], sizes  # it had to shrink to fit
            assert sizes["svg"] <= sizes["canvas"] + 1 and sizes["scroll"] <= sizes["canvas"] + 1, sizes
            assert sizes["canvas"] <= sizes["output"] + 1, sizes

            # the failed step's panel opened by itself, with the cell's lines
            boom = panel(page, output, "boom")
            assert "jupyter-widget-Collapse-open" in (boom.get_attribute("class") or "")
            trace = boom.locator(".jupyter-widget-Collapse-contents")
            trace.get_by_text("Cell step boom, line 3").wait_for()
            text = trace.inner_text()
            assert "raise ValueError(f'bad row {x}')" in text and "ValueError: bad row 5" in text
            assert "flownb/" not in text
            notebook.screenshot(artifacts / "1-light-failure-panel.png")

            # a click on a node opens that step's panel: the figure is an image
            output.locator('.flownb-graph g.node[data-step="plot"]').click()
            plot = panel(page, output, "plot")
            plot.locator(".jupyter-widget-Collapse-contents img").wait_for()
            assert "jupyter-widget-Collapse-open" in (plot.get_attribute("class") or "")
            image = plot.locator(".jupyter-widget-Collapse-contents img").first
            assert (image.get_attribute("src") or "").startswith("data:image/png")
            page.wait_for_function("img => img.complete", arg=image.element_handle())
            assert image.evaluate("img => img.naturalWidth") > 100  # a picture that decodes, not a broken icon

            # zoom: the + button makes the picture wider than the canvas (then it pans)
            output.locator(".flownb-zoom button[data-zoom='one']").click()
            assert output.evaluate("el => el.querySelector('.flownb-graph-canvas').scrollWidth") > sizes["canvas"]
            output.locator(".flownb-zoom button[data-zoom='fit']").click()

            output.evaluate("el => el.scrollIntoView({block: 'start'})")
            notebook.screenshot(artifacts / "2-light.png")
            check_contrast(output, "light")

            notebook.set_theme("JupyterLab Dark")
            output.evaluate("el => el.scrollIntoView({block: 'start'})")
            page.wait_for_timeout(300)  # the theme's stylesheet applies on the next frames
            notebook.screenshot(artifacts / "3-dark.png")
            check_contrast(output, "dark")
        except BaseException:
            try:
                print(f"failure screenshot: {notebook.screenshot(artifacts / 'failure.png')}")
            finally:
                print(f"--- JupyterLab log ---\n{lab.log_tail()}")
            raise


def test_a_notebook_saved_after_nbclient_renders_its_final_state(
    chromium: Path, artifacts: Path, tmp_path: Path
) -> None:
    saved = run_headless(tmp_path, tmp_path / "store.duckdb")
    html = to_html(saved)
    with chromium_page(chromium, tmp_path) as page:
        page.set_default_timeout(TIMEOUT_MS)
        # no kernel and no network: the widgets cannot load, the static HTML must carry the state
        page.goto(html.as_uri(), wait_until="domcontentloaded")
        static = page.locator(".flownb-static")
        static.first.wait_for()
        assert static.count() == 2
        first = static.first
        first.scroll_into_view_if_needed()
        assert first.is_visible() and "4/4 steps done" in first.inner_text()
        assert "running" not in first.inner_text()
        svg = first.locator("svg")
        assert svg.is_visible()
        box = svg.bounding_box()
        assert box is not None and 0 < box["width"] <= page.viewport_size["width"] and box["height"] > 20
        assert first.locator("tr").count() == 5
        page.screenshot(path=str(artifacts / "4-saved-notebook.png"), full_page=False)
