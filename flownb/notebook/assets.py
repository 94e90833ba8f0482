"""The live view's stylesheet and the graph widget's JavaScript (an anywidget ES module).

They live in a Python module rather than as ``.js``/``.css`` package data so that
every install carries them, whatever the packaging configuration says.

Colours come from JupyterLab's theme variables (``--jp-*``), with VS Code's
(``--vscode-*``) and light defaults behind them. Every status has one colour
(``--c``); pills, node fills and strokes mix it with the theme's text or
background colour rather than using it raw, so that text keeps a contrast of at
least 4.5:1 in the light, the dark and the high-contrast themes (the browser
test measures it from the rendered colours).
"""

from __future__ import annotations

STATUSES = ("pending", "running", "retrying", "waiting", "succeeded", "cached", "failed", "skipped", "cancelled")

VIEW_CSS = """
.flownb-live, .flownb-graph {
  --flownb-fg: var(--jp-ui-font-color0, var(--vscode-editor-foreground, #1f2328));
  --flownb-bg: var(--jp-layout-color0, var(--vscode-editor-background, #ffffff));
  --flownb-line: color-mix(in srgb, var(--flownb-fg) 30%, var(--flownb-bg));
  --flownb-edge: color-mix(in srgb, var(--flownb-fg) 55%, var(--flownb-bg));
  --flownb-c-pending: color-mix(in srgb, var(--flownb-fg) 45%, var(--flownb-bg));
  --flownb-c-running: var(--jp-brand-color1, #1976d2);
  --flownb-c-retrying: var(--jp-warn-color1, #f57c00);
  --flownb-c-waiting: var(--jp-warn-color1, #f57c00);
  --flownb-c-paused: var(--jp-warn-color1, #f57c00);
  --flownb-c-succeeded: var(--jp-success-color1, #388e3c);
  --flownb-c-cached: var(--jp-info-color1, #0097a7);
  --flownb-c-failed: var(--jp-error-color1, #d32f2f);
  --flownb-c-skipped: color-mix(in srgb, var(--flownb-fg) 40%, var(--flownb-bg));
  --flownb-c-cancelled: color-mix(in srgb, var(--flownb-fg) 55%, var(--flownb-bg));
  --flownb-c-interrupted: var(--jp-warn-color0, #e65100);
  color: var(--flownb-fg);
}
.flownb-st-pending { --c: var(--flownb-c-pending); }
.flownb-st-running { --c: var(--flownb-c-running); }
.flownb-st-retrying { --c: var(--flownb-c-retrying); }
.flownb-st-waiting { --c: var(--flownb-c-waiting); }
.flownb-st-paused { --c: var(--flownb-c-paused); }
.flownb-st-succeeded { --c: var(--flownb-c-succeeded); }
.flownb-st-cached { --c: var(--flownb-c-cached); }
.flownb-st-failed { --c: var(--flownb-c-failed); }
.flownb-st-skipped { --c: var(--flownb-c-skipped); }
.flownb-st-cancelled { --c: var(--flownb-c-cancelled); }
.flownb-st-interrupted { --c: var(--flownb-c-interrupted); }
.flownb-pill {
  background: color-mix(in srgb, var(--c, var(--flownb-c-pending)) 22%, var(--flownb-bg));
  color: color-mix(in srgb, var(--c, var(--flownb-c-pending)) 50%, var(--flownb-fg));
  padding: 0 6px; border-radius: 8px; font-weight: 600; white-space: nowrap;
}
.flownb-error { color: color-mix(in srgb, var(--flownb-c-failed) 50%, var(--flownb-fg)); }
.flownb-muted { color: color-mix(in srgb, var(--flownb-fg) 75%, var(--flownb-bg)); }
.flownb-summary { border-collapse: collapse; font-size: 90%; margin-top: 6px; color: var(--flownb-fg); }
.flownb-summary th, .flownb-summary td {
  padding: 3px 10px; text-align: left; vertical-align: top; border-bottom: 1px solid var(--flownb-line);
}
.flownb-card {
  border: 1px solid color-mix(in srgb, var(--flownb-c-waiting) 70%, var(--flownb-bg));
  border-radius: 4px; padding: 6px; margin: 4px 0;
}
.flownb-card.flownb-decided { border-color: var(--flownb-line); }
.jp-OutputArea-child:has(.flownb-live) ~ .jp-OutputArea-child:has(.flownb-static) { display: none; }
/* ipywidgets greys closed panel titles (--jp-ui-font-color2): 4.4:1 on their grey, below WCAG's 4.5 */
.flownb-live .jupyter-widget-Collapse > .jupyter-widget-Collapse-header {
  color: color-mix(in srgb, var(--flownb-fg) 80%, var(--flownb-bg));
}
.flownb-live .jupyter-widget-Collapse-open > .jupyter-widget-Collapse-header { color: var(--flownb-fg); }
"""

GRAPH_CSS = """
.flownb-graph { font-size: 12px; }
.flownb-graph-bar { display: flex; flex-wrap: wrap; gap: 4px 12px; align-items: center; margin: 2px 0 4px; }
.flownb-legend { display: flex; flex-wrap: wrap; gap: 4px; }
.flownb-zoom { display: flex; gap: 2px; margin-left: auto; }
.flownb-graph button {
  background: var(--jp-layout-color2, color-mix(in srgb, var(--flownb-fg) 8%, var(--flownb-bg)));
  color: var(--flownb-fg); border: 1px solid var(--flownb-line); border-radius: 3px;
  padding: 0 8px; min-width: 28px; cursor: pointer; font: inherit; line-height: 20px;
}
.flownb-graph-canvas {
  overflow: auto; max-height: 70vh; border: 1px solid var(--flownb-line); border-radius: 4px;
  background: var(--flownb-bg); cursor: grab; position: relative;
}
.flownb-graph-canvas.flownb-dragging { cursor: grabbing; user-select: none; }
.flownb-graph-canvas svg { display: block; }
.flownb-graph-empty { padding: 12px; }
.flownb-graph svg g.node { cursor: pointer; }
.flownb-graph svg g.node > path, .flownb-graph svg g.node > polygon, .flownb-graph svg g.node > ellipse {
  fill: color-mix(in srgb, var(--c, var(--flownb-c-pending)) 24%, var(--flownb-bg));
  stroke: color-mix(in srgb, var(--c, var(--flownb-c-pending)) 85%, var(--flownb-fg));
}
.flownb-graph svg g.node.flownb-st-running > path { stroke-width: 2; }
.flownb-graph svg g.node.flownb-selected > path { stroke-width: 3; stroke: var(--flownb-fg); }
.flownb-graph svg g.node text { fill: var(--flownb-fg); }
.flownb-graph svg g.edge path { stroke: var(--flownb-edge); }
.flownb-graph svg g.edge polygon { fill: var(--flownb-edge); stroke: var(--flownb-edge); }
.flownb-graph svg g.edge text { fill: var(--flownb-fg); }
"""

# The widget's model holds `svg` (the laid-out picture, sent once per layout), `snapshot`
# (JSON text: every step's [status, label, note] at sequence `seq`; the saved state) and `uid`.
# A step the kernel told nothing of is pending.
# Updates arrive as custom messages: {kind: "patch", seq, steps, elapsed_ms, running}
# with only the steps that changed, or {kind: "full", ...} in answer to the "hello" a
# model sends when it starts (patches sent before it listened are lost, so until the
# kernel hears "hello" each patch carries every change since the last snapshot).
# A click on a node sends {kind: "select", step}.
GRAPH_JS = r"""
const PREFIX = "flownb_step_";
const STATUSES = %STATUSES%;
const STATES = new Map();

function stateOf(model) {
  const uid = model.get("uid") || "";
  let st = STATES.get(uid);
  if (!st) {
    st = { seq: -1, steps: {}, elapsed: 0, at: performance.now(), running: false, views: new Set() };
    STATES.set(uid, st);
  }
  return st;
}

function take(st, msg, full) {
  st.seq = msg.seq;
  st.steps = full ? Object.assign({}, msg.steps || {}) : Object.assign(st.steps, msg.steps || {});
  st.elapsed = msg.elapsed_ms || 0;
  st.running = !!msg.running;
  st.total = msg.total || 0;
  st.at = performance.now();
  const keys = full ? null : Object.keys(msg.steps || {});
  for (const v of st.views) v.update(keys);
}

function duration(ms) {
  const s = ms / 1000;
  if (s < 1) return Math.round(ms) + "ms";
  if (s < 60) return s.toFixed(1) + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
  return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
}

function parse(text) {
  try { return text ? JSON.parse(text) : null; } catch (e) { return null; }
}

function px(length) {
  const m = /^([0-9.]+)(pt|px)?$/.exec(length || "");
  if (!m) return null;
  return parseFloat(m[1]) * (m[2] === "pt" ? 96 / 72 : 1);
}

function initialize({ model }) {
  const st = stateOf(model);
  const fromSnapshot = () => {
    const s = parse(model.get("snapshot"));
    if (s && typeof s.seq === "number" && s.seq > st.seq) take(st, s, true);
  };
  const onMessage = (msg) => {
    if (!msg || typeof msg !== "object") return;
    if (msg.kind === "full" && msg.seq >= st.seq) take(st, msg, true);
    else if (msg.kind === "patch" && msg.seq > st.seq) take(st, msg, false);
  };
  fromSnapshot();
  model.on("change:snapshot", fromSnapshot);
  model.on("msg:custom", onMessage);
  try { model.send({ kind: "hello" }); } catch (e) { /* no kernel: a saved notebook */ }
  return () => {
    model.off("change:snapshot", fromSnapshot);
    model.off("msg:custom", onMessage);
  };
}

function render({ model, el }) {
  const st = stateOf(model);
  if (st.seq < 0) {
    const s = parse(model.get("snapshot"));
    if (s && typeof s.seq === "number") take(st, s, true);
  }
  el.classList.add("flownb-graph");
  el.innerHTML =
    '<div class="flownb-graph-bar"><span class="flownb-elapsed"></span><span class="flownb-legend"></span>' +
    '<span class="flownb-zoom"><button data-zoom="out" title="zoom out">\u2212</button>' +
    '<button data-zoom="fit" title="fit to width">fit</button>' +
    '<button data-zoom="in" title="zoom in">+</button>' +
    '<button data-zoom="one" title="natural size">1:1</button></span></div>' +
    '<div class="flownb-graph-canvas"><div class="flownb-graph-empty">laying out the graph\u2026</div></div>';
  const canvas = el.querySelector(".flownb-graph-canvas");
  const legend = el.querySelector(".flownb-legend");
  const elapsed = el.querySelector(".flownb-elapsed");
  const nodes = new Map();
  let svg = null, natural = null, scale = 1, fit = true, selected = null;

  function paintNode(name) {
    const n = nodes.get(name);
    const v = st.steps[name] || ["pending", "pending", ""];  // the kernel sends only what is not pending
    if (!n) return;
    const cls = "node flownb-st-" + v[0] + (name === selected ? " flownb-selected" : "");
    if (n.g.getAttribute("class") !== cls) n.g.setAttribute("class", cls);
    if (n.label && n.label.textContent !== v[1]) n.label.textContent = v[1];
    if (n.title) n.title.textContent = name + "\n" + v[1] + (v[2] ? "\n" + v[2] : "") + "\nclick: show its panel";
  }

  function paintLegend() {
    const counts = {};
    let told = 0;
    for (const name in st.steps) { counts[st.steps[name][0]] = (counts[st.steps[name][0]] || 0) + 1; told++; }
    counts.pending = (counts.pending || 0) + Math.max(0, Math.max(st.total || 0, nodes.size) - told);
    legend.innerHTML = STATUSES.map((s) =>
      '<span class="flownb-pill flownb-st-' + s + '">' + s + " " + (counts[s] || 0) + "</span>").join("");
  }

  function paintElapsed() {
    const ms = st.elapsed + (st.running ? performance.now() - st.at : 0);
    elapsed.textContent = (st.running ? "elapsed " : "took ") + duration(ms);
  }

  const view = {
    update(keys) {
      for (const name of keys || nodes.keys()) paintNode(name);
      paintLegend();
      paintElapsed();
    },
  };

  function applyZoom() {
    if (!svg || !natural) return;
    if (fit) scale = Math.min(1, Math.max(0.05, (canvas.clientWidth - 2) / natural.w));
    svg.setAttribute("width", (natural.w * scale).toFixed(1) + "px");
    svg.setAttribute("height", (natural.h * scale).toFixed(1) + "px");
  }

  function setSvg() {
    const text = model.get("svg");
    if (!text) return;
    canvas.innerHTML = text;
    svg = canvas.querySelector("svg");
    if (!svg) return;
    natural = { w: px(svg.getAttribute("width")) || 300, h: px(svg.getAttribute("height")) || 150 };
    nodes.clear();
    for (const g of svg.querySelectorAll("g.node")) {
      const title = g.querySelector("title");
      const name = title ? title.textContent : (g.id || "").slice(PREFIX.length);
      const texts = g.querySelectorAll("text");
      g.setAttribute("data-step", name);
      nodes.set(name, { g, title, label: texts.length > 1 ? texts[texts.length - 1] : null });
    }
    applyZoom();
    view.update(null);
  }

  function zoom(factor, cx, cy) {
    if (!natural) return;
    const old = scale;
    fit = false;
    scale = Math.min(8, Math.max(0.05, scale * factor));
    const x = cx === undefined ? canvas.clientWidth / 2 : cx, y = cy === undefined ? canvas.clientHeight / 2 : cy;
    const left = canvas.scrollLeft, top = canvas.scrollTop;
    applyZoom();
    canvas.scrollLeft = (left + x) * (scale / old) - x;
    canvas.scrollTop = (top + y) * (scale / old) - y;
  }

  el.querySelector(".flownb-zoom").addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    const z = b.getAttribute("data-zoom");
    if (z === "in") zoom(1.25);
    else if (z === "out") zoom(0.8);
    else if (z === "one") { fit = false; scale = 1; applyZoom(); }
    else { fit = true; applyZoom(); }
  });
  canvas.addEventListener("wheel", (e) => {
    if (!(e.ctrlKey || e.metaKey)) return;  // a plain wheel scrolls the notebook
    e.preventDefault();
    const r = canvas.getBoundingClientRect();
    zoom(e.deltaY < 0 ? 1.1 : 1 / 1.1, e.clientX - r.left, e.clientY - r.top);
  }, { passive: false });

  let drag = null;
  canvas.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    drag = { x: e.clientX, y: e.clientY, left: canvas.scrollLeft, top: canvas.scrollTop, moved: false };
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
    if (!drag.moved) { drag.moved = true; canvas.classList.add("flownb-dragging"); }
    canvas.scrollLeft = drag.left - dx;
    canvas.scrollTop = drag.top - dy;
  });
  const endDrag = () => { canvas.classList.remove("flownb-dragging"); setTimeout(() => { drag = null; }, 0); };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointerleave", endDrag);
  canvas.addEventListener("click", (e) => {
    if (drag && drag.moved) return;
    const g = e.target.closest && e.target.closest("g.node");
    if (!g) return;
    const name = g.getAttribute("data-step");
    const before = selected;
    selected = name;
    if (before) paintNode(before);
    paintNode(name);
    try { model.send({ kind: "select", step: name }); } catch (err) { /* no kernel */ }
  });

  const resize = typeof ResizeObserver === "function" ? new ResizeObserver(() => { if (fit) applyZoom(); }) : null;
  if (resize) resize.observe(canvas);
  const timer = setInterval(() => { if (st.running) paintElapsed(); }, 500);
  model.on("change:svg", setSvg);
  st.views.add(view);
  setSvg();
  view.update(null);
  return () => {
    st.views.delete(view);
    model.off("change:svg", setSvg);
    clearInterval(timer);
    if (resize) resize.disconnect();
  };
}

export default { initialize, render };
""".replace("%STATUSES%", "[" + ", ".join(f'"{s}"' for s in STATUSES) + "]")
