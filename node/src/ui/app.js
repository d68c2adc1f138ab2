// The Lexum live view. Renders the state the node embeds in the page, then
// follows /ui/events (server-sent events). Downloads nothing else.
"use strict";

const LANES = ["Critical", "High", "Normal", "Low", "Background"];
const STATUS = { Satisfied: "SATISFIED", Violated: "VIOLATED", Repairing: "REPAIRING", Failed: "FAILED",
  Dominated: "DOMINATED", Trapped: "TRAPPED", Contested: "CONTESTED" };
const PALETTE = ["#1565c0", "#d84315", "#2e7d32", "#6a1b9a", "#00838f", "#ef6c00", "#5d4037", "#ad1457"];
const MAX_EVENTS = 100;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

// A wire value ({"Int": 5}, {"Str": "a"}, {"List": [...]}) as text.
function show(v) {
  if (v === null || v === undefined) return "-";
  if ("Int" in v) return String(v.Int);
  if ("Bool" in v) return String(v.Bool);
  if ("Str" in v) return JSON.stringify(v.Str);
  if ("List" in v) return "[" + v.List.map(show).join(", ") + "]";
  return JSON.stringify(v);
}

function short(hash) { return hash ? hash.slice(0, 10) : "?"; }

function cause(c) {
  if (!c) return "";
  if (c.Cycle) return `cycle ${c.Cycle.cycle.cycle} of ${c.Cycle.cycle.goal} (${c.Cycle.step})`;
  if (c.Client) return `client ${c.Client.principal}` + (c.Client.caused_by.length ? ` observing ${c.Client.caused_by.join(", ")}` : "");
  if (c.Handler) return `handler ${c.Handler.handler}`;
  return JSON.stringify(c);
}

function renderCluster(state) {
  const box = document.getElementById("cluster");
  box.replaceChildren(
    el("span", {}, `node ${state.node}`),
    el("span", {}, `leader ${state.leader ?? "none"}`),
    el("span", {}, `term ${state.term}`),
    el("span", {}, `commit ${state.commit_index}`),
    el("span", {}, `program v${state.engine.version} ${short(state.engine.program_hash)}`),
    ...state.members.map((m) => el("span", { class: "member" + (m.leader ? " leader" : "") + (m.reachable ? "" : " down") },
      `#${m.id} ${m.address}${m.leader ? " (leader)" : ""} @${m.applied_index ?? "?"} ${short(m.state_hash)}`)),
  );
}

function renderLanes(engine) {
  const lanes = document.getElementById("lanes");
  lanes.replaceChildren();
  for (const lane of LANES) {
    const domains = engine.domains.filter((d) => d.priority === lane);
    const row = el("div", { class: "lane", "data-lane": lane.toLowerCase() },
      el("div", { class: "label" }, lane.toLowerCase()), el("div", { class: "domains" }));
    for (const d of domains) {
      const card = el("div", { class: "domain", "data-domain": d.name }, el("div", { class: "name" }, d.name));
      if (d.fields.length) {
        card.append(el("div", { class: "fields" }, d.fields.map(([n, v]) => `${n}=${show(v)}`).join("  ")));
      }
      for (const g of d.goals) {
        const status = STATUS[g.report.status] || g.report.status;
        const path = `${g.report.domain}.${g.report.goal}`;
        const line = el("div", { class: "goal", "data-goal": path, "data-status": status },
          el("span", { class: "status " + status }, status),
          el("span", {}, g.report.goal),
          g.report.code ? el("span", { class: "muted" }, g.report.code) : null);
        if (g.running) {
          const slice = g.running.slice ? `.${g.running.slice}` : " (awaiting what it caused)";
          line.append(el("span", { class: "running" },
            `▶ ${g.running.transition}${slice}${g.running.suspended ? " (suspended)" : ""}` +
            (g.running.effects.length ? ` waits for ${g.running.effects.join(", ")}` : "")));
        }
        if (g.dominated_by.length) line.append(el("span", { class: "running" }, `dominated by ${g.dominated_by.join(", ")}`));
        card.append(line);
      }
      row.lastChild.append(card);
    }
    if (!domains.length) row.lastChild.append(el("span", { class: "muted" }, "—"));
    lanes.append(row);
  }
  if (engine.domains_left_out) lanes.append(el("div", { class: "muted" }, `${engine.domains_left_out} more domains not drawn`));
}

// Dominance arrows from the higher goal to the lower one.
function renderArrows(engine) {
  const layer = document.getElementById("arrows");
  layer.replaceChildren();
  const base = layer.getBoundingClientRect();
  const defs = svg("defs");
  const marker = svg("marker", { id: "head", markerWidth: 8, markerHeight: 8, refX: 7, refY: 4, orient: "auto" });
  marker.append(svg("path", { d: "M0,0 L8,4 L0,8 z", fill: "#6a1b9a" }));
  defs.append(marker);
  layer.append(defs);
  for (const [higher, lower] of engine.dominance) {
    const a = document.querySelector(`[data-goal="${CSS.escape(higher)}"]`);
    const b = document.querySelector(`[data-goal="${CSS.escape(lower)}"]`);
    if (!a || !b) continue;
    const ra = a.getBoundingClientRect(), rb = b.getBoundingClientRect();
    const x1 = ra.left - base.left + 20, y1 = ra.bottom - base.top;
    const x2 = rb.left - base.left + 20, y2 = rb.top - base.top;
    const path = svg("path", { d: `M${x1},${y1} C${x1 + 60},${(y1 + y2) / 2} ${x2 + 60},${(y1 + y2) / 2} ${x2},${y2}`,
      "marker-end": "url(#head)", class: "dominance", "data-higher": higher, "data-lower": lower });
    layer.append(path);
  }
}

// One field's oscillation vector: the value after each attributed write,
// each segment in the colour of the writer whose write it is.
function vectorChart(field, points, current, colors) {
  const ints = points.every((p) => typeof p.delta === "number") && current && "Int" in current;
  const values = new Array(points.length);
  let v = ints ? current.Int : points.length;
  for (let i = points.length - 1; i >= 0; i--) { values[i] = v; v -= points[i].delta; }
  const start = v;
  const W = 420, H = 160, P = 28;
  const all = [start, ...values];
  const lo = Math.min(...all), hi = Math.max(...all);
  const x = (i) => P + (i * (W - 2 * P)) / Math.max(1, points.length);
  const y = (val) => H - P - ((val - lo) * (H - 2 * P)) / Math.max(1, hi - lo);
  const chart = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: "vector",
    "data-field": field, "data-points": points.length });
  chart.append(svg("line", { x1: P, y1: H - P, x2: W - P, y2: H - P, stroke: "#bbb" }));
  chart.append(svg("line", { x1: P, y1: P, x2: P, y2: H - P, stroke: "#bbb" }));
  for (const val of [lo, hi]) {
    const t = svg("text", { x: 2, y: y(val) + 4, "font-size": 10, fill: "#666" });
    t.textContent = String(val);
    chart.append(t);
  }
  let prev = [x(0), y(start)];
  points.forEach((p, i) => {
    const next = [x(i + 1), y(values[i])];
    const color = colors.get(p.writer);
    chart.append(svg("path", { d: `M${prev[0]},${prev[1]} H${next[0]} V${next[1]}`, stroke: color,
      "stroke-width": 2.5, fill: "none", class: "segment", "data-writer": p.writer }));
    const dot = svg("circle", { cx: next[0], cy: next[1], r: 3.5, fill: color });
    const title = svg("title");
    title.textContent = `${p.writer} ${p.delta >= 0 ? "+" : ""}${p.delta} at index ${p.index}`;
    dot.append(title);
    chart.append(dot);
    prev = next;
  });
  return el("figure", { class: "chart" }, chart, el("figcaption", {}, `${field}: value over the cycles' writes`));
}

function renderTraps(engine) {
  const box = document.getElementById("traps");
  box.replaceChildren();
  if (!engine.traps.length) { box.append(el("div", { class: "muted" }, "none")); return; }
  for (const t of engine.traps) {
    const writers = [...new Set(t.vector.map((p) => p.writer))];
    const colors = new Map(writers.map((w, i) => [w, PALETTE[i % PALETTE.length]]));
    const values = new Map(t.values);
    const fields = [...new Set(t.vector.map((p) => p.field))];
    const card = el("div", { class: "trap", "data-trap": t.goal },
      el("div", {}, el("span", { class: "status TRAPPED" }, "TRAPPED"), " ", el("strong", {}, t.goal), " ", t.code || ""),
      el("div", { class: "evidence" }, t.evidence || ""),
      el("div", { class: "legend" }, writers.map((w) => el("span", {}, el("i", { style: `background:${colors.get(w)}` }), w))),
      el("div", { class: "charts" }, fields.map((f) => vectorChart(f, t.vector.filter((p) => p.field === f), values.get(f), colors))));
    if (t.writes.length) {
      const rows = t.writes.slice(-8).map((w) => el("tr", {}, el("td", {}, w.index), el("td", {}, w.field),
        el("td", {}, `${show(w.old)} → ${show(w.new)}`), el("td", {}, cause(w.cause))));
      card.append(el("table", {}, el("tr", {}, el("th", {}, "index"), el("th", {}, "field"), el("th", {}, "write"),
        el("th", {}, "cause")), rows));
    }
    box.append(card);
  }
}

function renderEffects(engine) {
  const box = document.getElementById("effects");
  if (!engine.effects.length) { box.replaceChildren(el("div", { class: "muted" }, "none in flight")); return; }
  const rows = engine.effects.map((e) => el("tr", {}, el("td", {}, e.effect),
    el("td", {}, e.args.map(([n, v]) => `${n}: ${show(v)}`).join(", ")), el("td", {}, e.state),
    el("td", {}, e.worker || "-"), el("td", {}, e.attempts), el("td", {}, e.goal || "-"), el("td", {}, e.priority)));
  box.replaceChildren(el("table", {}, el("tr", {}, ["effect", "arguments", "state", "worker", "attempts", "goal", "level"]
    .map((h) => el("th", {}, h))), rows));
}

function render(state) {
  if (!state) return;
  renderCluster(state);
  renderLanes(state.engine);
  renderTraps(state.engine);
  renderEffects(state.engine);
  renderArrows(state.engine);
  document.body.setAttribute("data-index", state.engine.index);
}

function addEvent(e) {
  const list = document.getElementById("events");
  list.prepend(el("li", {}, `#${e.index} ${e.kind}${e.code ? " " + e.code : ""}: ${e.message}`));
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
}

render(window.LEXUM_INITIAL_STATE);
window.addEventListener("resize", () => window.LEXUM_LAST && renderArrows(window.LEXUM_LAST.engine));
if (window.EventSource) {
  const live = document.getElementById("live");
  const source = new EventSource("/ui/events");
  source.addEventListener("state", (m) => {
    window.LEXUM_LAST = JSON.parse(m.data);
    render(window.LEXUM_LAST);
    live.textContent = `live · index ${window.LEXUM_LAST.engine.index}`;
  });
  source.addEventListener("event", (m) => addEvent(JSON.parse(m.data)));
  source.onerror = () => { live.textContent = "reconnecting…"; };
}
