// flownb's page: runs, a run's live graph, steps, logs, errors, and approvals.
// Talks to the same /api routes as any client; the session cookie authenticates it,
// and the X-Flownb-Page header marks its requests (auth.py). Data is only ever set
// as text (textContent), never as HTML; the graph is the server's own SVG.
"use strict";

const PAGE_SIZE = 20;
const $ = (id) => document.getElementById(id);
const state = {
  flow: "", status: "", cursors: [null], page: 0, nextCursor: null,
  runId: null, source: null, refreshTimer: null, lastSeq: -1,
};

async function api(path, options = {}, tries = 3) {
  const response = await fetch(path, {
    ...options, credentials: "same-origin",
    headers: { "X-Flownb-Page": "1", ...(options.body ? { "Content-Type": "application/json" } : {}) },
  });
  if (response.status === 401) { location.reload(); throw new Error("signed out"); }
  if (response.status === 429 && tries > 1) {
    const wait = Number(response.headers.get("Retry-After") || "1");
    await new Promise((done) => setTimeout(done, wait * 1000));
    return api(path, options, tries - 1);
  }
  const isJson = (response.headers.get("Content-Type") || "").includes("application/json");
  const body = isJson ? await response.json() : await response.text();
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function pill(status) { return el("span", status, `pill s-${status}`); }

function when(iso) { return iso ? new Date(iso).toLocaleString() : ""; }

function took(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

function notice(text) {
  const box = $("notice");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(notice.timer);
  notice.timer = setTimeout(() => { box.hidden = true; }, 6000);
}

// -- runs ------------------------------------------------------------------------------

async function loadFlows() {
  const { flows } = await api("/api/flows");
  const select = $("filter-flow");
  for (const f of flows) select.append(new Option(f.name, f.name));
  $("served").textContent = `serving ${flows.map((f) => f.name).join(", ")}`;
}

async function loadRuns() {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (state.flow) query.set("flow", state.flow);
  if (state.status) query.set("status", state.status);
  const cursor = state.cursors[state.page];
  if (cursor) query.set("cursor", cursor);
  const { runs, next_cursor } = await api(`/api/runs?${query}`);
  state.nextCursor = next_cursor;
  const body = $("runs-table").tBodies[0];
  body.replaceChildren(...runs.map((r) => {
    const row = el("tr");
    row.dataset.runId = r.run_id;
    if (r.run_id === state.runId) row.classList.add("selected");
    const status = el("td"); status.append(pill(r.status));
    row.append(el("td", r.run_id), el("td", r.flow), status, el("td", when(r.started_at)), el("td", took(r.duration_ms)));
    row.addEventListener("click", () => { location.hash = `run=${encodeURIComponent(r.run_id)}`; });
    return row;
  }));
  $("runs-empty").hidden = runs.length > 0;
  $("page-newer").disabled = state.page === 0;
  $("page-older").disabled = !next_cursor;
  $("page-number").textContent = `page ${state.page + 1}`;
}

function resetPages() { state.cursors = [null]; state.page = 0; loadRuns().catch((e) => notice(e.message)); }

// -- one run ---------------------------------------------------------------------------

function selectRun(runId) {
  if (state.source) { state.source.close(); state.source = null; }
  state.runId = runId;
  state.lastSeq = -1;
  for (const row of $("runs-table").tBodies[0].rows) row.classList.toggle("selected", row.dataset.runId === runId);
  $("detail-empty").hidden = Boolean(runId);
  $("detail-body").hidden = !runId;
  if (!runId) return;
  refresh().then((run) => {
    if (run && !run.ended && run.status !== "interrupted") follow(runId);
    const listed = [...$("runs-table").tBodies[0].rows].some((r) => r.dataset.runId === runId);
    if (run && !listed && state.page === 0) loadRuns().catch(() => {});
  });
}

function follow(runId) {
  // one JSON event per message; the server closes the stream when the run ends
  const source = new EventSource(`/api/runs/${encodeURIComponent(runId)}/events`);
  state.source = source;
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.event === "run_ended") { source.close(); refresh(); loadRuns().catch(() => {}); return; }
    scheduleRefresh();
  };
  source.onerror = () => { if (source.readyState === EventSource.CLOSED) scheduleRefresh(); };
}

function scheduleRefresh() {
  if (state.refreshTimer) return;
  state.refreshTimer = setTimeout(() => { state.refreshTimer = null; refresh(); }, 300);
}

async function refresh() {
  const runId = state.runId;
  if (!runId) return null;
  try {
    const run = await api(`/api/runs/${encodeURIComponent(runId)}`);
    if (runId !== state.runId) return null;
    showRun(run);
    if (run.last_seq !== state.lastSeq) {
      state.lastSeq = run.last_seq;
      await showGraph(runId);
    }
    return run;
  } catch (error) {
    notice(error.message);
    return null;
  }
}

function showRun(run) {
  $("run-title").textContent = `${run.flow} · ${run.run_id}`;
  const status = $("run-status");
  status.textContent = run.status;
  status.className = `pill s-${run.status}`;
  status.dataset.status = run.status;
  const meta = [run.trigger && `by ${run.trigger}`, run.started_at && `started ${when(run.started_at)}`,
    run.duration_ms !== null && `took ${took(run.duration_ms)}`, run.host && `on ${run.host} (pid ${run.pid})`];
  $("run-meta").textContent = meta.filter(Boolean).join(" · ");
  $("run-error").hidden = !run.error;
  $("run-error").textContent = run.error || "";
  $("cancel").hidden = run.ended || run.status === "interrupted";
  showApprovals(run);
  showSteps(run);
  const row = [...$("runs-table").tBodies[0].rows].find((r) => r.dataset.runId === run.run_id);
  if (row) row.cells[2].replaceChildren(pill(run.status));
}

function showApprovals(run) {
  const box = $("approvals");
  const cards = run.approvals.map((a) => {
    const card = el("div", null, "approval");
    card.dataset.step = a.step;
    card.append(el("strong", `Approval: ${a.step}`), el("p", a.message));
    if (a.pending) {
      const who = el("input");
      who.placeholder = "Your name";
      who.value = localStorage.getItem("flownb.name") || "";
      who.setAttribute("aria-label", "your name");
      const comment = el("textarea");
      comment.placeholder = "Comment (optional)";
      comment.setAttribute("aria-label", `comment on ${a.step}`);
      const approve = el("button", "Approve", "approve");
      const reject = el("button", "Reject", "reject");
      for (const [button, decision] of [[approve, "approve"], [reject, "reject"]]) {
        button.type = "button";
        button.addEventListener("click", () => {
          localStorage.setItem("flownb.name", who.value.trim());
          decide(run.run_id, a.step, decision, comment.value, who.value.trim(), [approve, reject]);
        });
      }
      const buttons = el("div", null, "buttons");
      buttons.append(approve, reject);
      card.append(who, comment, buttons);
    } else if (a.decision) {
      const by = [a.decided_by && `by ${a.decided_by}`, a.via && `via ${a.via}`, a.decided_at && when(a.decided_at)];
      card.append(el("p", `${a.decision} ${by.filter(Boolean).join(" · ")}`, "muted"));
      if (a.comment) card.append(el("p", `“${a.comment}”`));
    }
    return card;
  });
  // keep a card being typed in: only replace the cards when what they show changed
  const signature = JSON.stringify(run.approvals.map((a) => [a.step, a.pending, a.decision]));
  if (box.dataset.signature !== signature) {
    box.dataset.signature = signature;
    box.replaceChildren(...cards);
  }
}

async function decide(runId, step, decision, comment, by, buttons) {
  for (const b of buttons) b.disabled = true;
  try {
    await api(`/api/runs/${encodeURIComponent(runId)}/approvals/${encodeURIComponent(step)}`, {
      method: "POST", body: JSON.stringify({ decision, comment: comment || null, by: by || null }),
    });
    notice(`${decision === "approve" ? "Approved" : "Rejected"} ${step}`);
  } catch (error) {
    notice(error.message);
    for (const b of buttons) b.disabled = false;
  }
  scheduleRefresh();
}

function showSteps(run) {
  const body = $("steps-table").tBodies[0];
  body.replaceChildren(...run.steps.map((s) => {
    const row = el("tr");
    row.dataset.step = s.step;
    const status = el("td"); status.append(pill(s.status));
    const items = s.items !== null ? ` (${s.items_done}/${s.items} items)` : "";
    row.append(el("td", s.step), el("td", s.kind), status, el("td", s.attempts),
      el("td", took(s.duration_ms) + items), el("td", s.error || s.reason || ""));
    return row;
  }));
  const details = $("step-details");
  const open = new Set([...details.querySelectorAll("details[open]")].map((d) => d.dataset.key));
  details.replaceChildren(...run.steps.flatMap((s) => {
    const parts = [["stdout", s.stdout], ["stderr", s.stderr], ["traceback", s.traceback]].filter(([, text]) => text);
    return parts.map(([what, text]) => {
      const box = el("details");
      box.dataset.key = `${s.step}:${what}`;
      box.open = open.has(box.dataset.key) || what === "traceback";
      box.append(el("summary", `${s.step}: ${what === "traceback" ? `${s.error_type || "error"} traceback` : what}`));
      box.append(el("pre", text, what === "traceback" ? "error-box" : ""));
      return box;
    });
  }));
}

async function showGraph(runId) {
  let text;
  try { text = await api(`/api/runs/${encodeURIComponent(runId)}/graph.svg`); } catch (error) { return; }
  if (runId !== state.runId) return;
  const doc = new DOMParser().parseFromString(text, "image/svg+xml");
  const svg = doc.documentElement;
  if (svg.nodeName !== "svg") return;
  // Graphviz's own output; drop anything active all the same
  for (const bad of svg.querySelectorAll("script, foreignObject")) bad.remove();
  for (const node of svg.querySelectorAll("*")) {
    for (const attr of [...node.attributes]) if (attr.name.startsWith("on")) node.removeAttribute(attr.name);
  }
  $("graph").replaceChildren(document.importNode(svg, true));
  $("graph").dataset.seq = String(state.lastSeq);
}

// -- wiring ----------------------------------------------------------------------------

function fromHash() {
  const match = /run=([^&]+)/.exec(location.hash);
  selectRun(match ? decodeURIComponent(match[1]) : null);
}

$("filter-flow").addEventListener("change", (e) => { state.flow = e.target.value; resetPages(); });
$("filter-status").addEventListener("change", (e) => { state.status = e.target.value; resetPages(); });
$("page-older").addEventListener("click", () => {
  state.cursors[state.page + 1] = state.nextCursor; state.page += 1; loadRuns().catch((e) => notice(e.message));
});
$("page-newer").addEventListener("click", () => {
  state.page = Math.max(0, state.page - 1); loadRuns().catch((e) => notice(e.message));
});
$("cancel").addEventListener("click", async () => {
  try { await api(`/api/runs/${encodeURIComponent(state.runId)}/cancel`, { method: "POST" }); notice("Cancelling"); }
  catch (error) { notice(error.message); }
  scheduleRefresh();
});
window.addEventListener("hashchange", fromHash);
setInterval(() => { if (!document.hidden) loadRuns().catch(() => {}); }, 5000);

loadFlows().catch((e) => notice(e.message));
loadRuns().then(fromHash).catch((e) => notice(e.message));
