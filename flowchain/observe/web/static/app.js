// FlowChain dashboard: draws the chain diagrams and the first snapshot the page itself carries
// (so it shows figures before, or without, a live connection), then applies every snapshot
// pushed by the server (server-sent events) to the tables and the diagrams' step colors.
// Escalated steps stay in a banner above everything until they recover.
"use strict";

const COLORS = { ok: "#2e7d32", slow: "#f9a825", erroring: "#ef6c00", failing: "#c62828",
                 idle: "#9e9e9e" };

function fmtNs(ns) {
  if (ns === null || ns === undefined) return "-";
  if (ns < 1e3) return ns.toFixed(0) + " ns";
  if (ns < 1e6) return (ns / 1e3).toPrecision(3) + " us";
  if (ns < 1e9) return (ns / 1e6).toPrecision(3) + " ms";
  return (ns / 1e9).toPrecision(3) + " s";
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function fillTable(id, rows) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...rows.map(function (cells) {
    const tr = document.createElement("tr");
    cells.forEach(function (c) { tr.appendChild(c); });
    return tr;
  }));
}

function diagramKey(tenant, chainId) { return tenant + "/" + chainId; }

function drawDiagrams(diagrams) {
  const holder = document.getElementById("diagrams");
  holder.replaceChildren();
  diagrams.forEach(function (d) {
    const div = document.createElement("div");
    div.className = "diagram";
    div.dataset.key = diagramKey(d.tenant, d.chain_id);
    div.innerHTML = d.svg;
    holder.appendChild(div);
  });
}

async function loadDiagrams() {
  const response = await fetch("/api/chains");
  drawDiagrams(await response.json());
}

function fmtRate(rate) { return rate === null || rate === undefined ? "-" : rate.toFixed(1); }

function showEscalations(escalations) {
  const banner = document.getElementById("escalations");
  banner.querySelector("ul").replaceChildren(...escalations.map(function (e) {
    const li = document.createElement("li");
    li.className = "escalation";
    li.dataset.key = e.chain + "/" + e.step;
    li.textContent = "ESCALATED " + e.chain + "/" + e.step + " (" + e.component + "): " +
      (100 * e.error_rate).toFixed(1) + "% of " + e.attempts + " attempts failed, since " +
      new Date(e.since_ns / 1e6).toLocaleTimeString() + " (" + e.duration_s.toFixed(0) + " s)";
    return li;
  }));
  banner.hidden = escalations.length === 0;
}

function updateDiagram(chain) {
  const div = document.querySelector('.diagram[data-key="' +
    CSS.escape(diagramKey(chain.tenant, chain.chain_id)) + '"]');
  if (!div) return;
  chain.steps.forEach(function (s) {
    const g = div.querySelector('g.step[data-step="' + CSS.escape(s.name) + '"]');
    if (!g) return;
    g.dataset.status = s.status;
    g.querySelector("rect").setAttribute("fill", COLORS[s.status] || COLORS.idle);
    g.querySelector('[data-field="latency"]').textContent =
      "p50 " + fmtNs(s.p50_ns) + " / p99 " + fmtNs(s.p99_ns);
    g.querySelector('[data-field="counts"]').textContent =
      s.count + " ok, " + s.errors + " errors (" + s.status + ")";
  });
}

function applyTenants(snap) {
  if (!snap.tenants) return;
  document.getElementById("tenancy").hidden = false;
  fillTable("tenants", snap.tenants.map(function (t) {
    const refused = Object.values(t.refused).reduce((a, b) => a + b, 0);
    const closest = Object.entries(t.ratios).sort((a, b) => b[1] - a[1])[0];
    return [cell(t.tenant), cell(t.tier), cell(t.isolation),
            cell(String(t.executions_today), "num"), cell(String(t.running), "num"),
            cell(String(refused), "num"),
            cell(closest ? closest[0] + " " + (100 * closest[1]).toFixed(0) + "%" : "-")];
  }));
  const list = document.getElementById("triggers");
  list.replaceChildren(...snap.upgrade_triggers.map(function (e) {
    const li = document.createElement("li");
    li.textContent = e.message;
    return li;
  }));
}

function applyOptimizer(snap) {
  if (!snap.optimizer) return;
  document.getElementById("optimizer").hidden = snap.optimizer.length === 0;
  fillTable("optimizer-findings", snap.optimizer.map(function (f) {
    return [cell(f.chain), cell(f.step), cell(f.type), cell(f.suggestion),
            cell(f.p50_speedup === null ? "-" : f.p50_speedup.toFixed(2) + "x", "num")];
  }));
}

function apply(snap) {
  applyTenants(snap);
  applyOptimizer(snap);
  fillTable("chains", snap.chains.map(function (c) {
    return [cell(c.tenant), cell(c.chain), cell(String(c.executions), "num executions"),
            cell(fmtRate(c.throughput_per_s), "num throughput"),
            cell(fmtRate(c.throughput_10s_per_s), "num throughput10"),
            cell(c.success_ratio === null ? "-" : (100 * c.success_ratio).toFixed(2) + "%",
                 "num success"),
            cell(fmtNs(c.p50_ns), "num"), cell(fmtNs(c.p99_ns), "num")];
  }));
  snap.chains.forEach(updateDiagram);
  showEscalations(snap.escalations || []);
  fillTable("live", snap.live.map(function (e) {
    return [cell(e.execution_id), cell(e.current_step || "-"), cell(e.progress + "%", "num"),
            cell(fmtNs(e.eta_ns), "num")];
  }));
  fillTable("feeds", Object.entries(snap.feeds).map(function ([name, f]) {
    const state = !f.connected ? "disconnected" : (f.stale ? "stale" : "connected");
    const sum = function (o) { return Object.values(o || {}).reduce((a, b) => a + b, 0); };
    return [cell(name), cell(state), cell(String(f.received), "num"),
            cell(String(f.gaps), "num"), cell(String(sum(f.rejects)), "num"),
            cell(String(sum(f.drops)), "num")];
  }));
  fillTable("failures", snap.failures.map(function (f) {
    const input = document.createElement("td");
    const pre = document.createElement("pre");
    pre.textContent = f.input || "";
    input.appendChild(pre);
    return [cell(f.execution_id), cell(f.step + " (" + f.component + ")"),
            cell(f.exception + ": " + f.message), input,
            cell((f.completed_steps || []).join(" > "))];
  }));
  const events = document.getElementById("events");
  events.replaceChildren(...snap.events.map(function (e) {
    const li = document.createElement("li");
    li.className = e.severity;
    li.textContent = new Date(e.time_ns / 1e6).toLocaleTimeString() + " " + e.kind + ": " +
      e.message;
    return li;
  }));
  document.getElementById("updated").textContent =
    "updated " + new Date(snap.time_ns / 1e6).toLocaleTimeString();
}

function connect() {
  const badge = document.getElementById("connection");
  const source = new EventSource("/api/events");
  source.addEventListener("snapshot", function (message) {
    badge.textContent = "live";
    badge.className = "badge on";
    apply(JSON.parse(message.data));
  });
  source.onerror = function () {
    badge.textContent = "reconnecting";
    badge.className = "badge off";
  };
}

function start() {
  const carried = document.getElementById("initial");
  if (carried) {
    const initial = JSON.parse(carried.textContent);
    drawDiagrams(initial.diagrams);
    apply(initial.snapshot);
    const badge = document.getElementById("connection");
    badge.textContent = "snapshot";
    badge.className = "badge snapshot";
    connect();
    return;
  }
  loadDiagrams().then(connect, function (err) {
    document.getElementById("connection").textContent = "failed: " + err;
  });
}

start();
