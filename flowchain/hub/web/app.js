// The hub's central dashboard: polls /api/v1/overview and redraws the three tables.
// A hub that requires a viewer token answers 401/403: the page then shows its login form. The
// token (typed there, or given once as #token=TOKEN in the address) stays in this tab's
// sessionStorage and goes with each fetch as a Bearer header; no cookie is set.
"use strict";

const REFRESH_MS = 1000;
const TOKEN_KEY = "flowchain.hub.viewer_token";
let timer = null;

function takeTokenFromAddress() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (!match) return;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
  history.replaceState(null, "", location.pathname + location.search);  // out of the history
}

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function askForToken(message) {
  document.getElementById("login").hidden = false;
  for (const id of ["nodes", "tenants", "chains"]) fill(id, []);
  document.getElementById("totals").textContent = "";
  const status = document.getElementById("status");
  status.textContent = message;
  status.className = "error";
}

function ns(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(2) + " ms";
  if (v >= 1e3) return (v / 1e3).toFixed(1) + " µs";
  return v + " ns";
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function fill(id, rows) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(...rows);
}

function row(cells, cls, key) {
  const tr = document.createElement("tr");
  if (cls) tr.className = cls;
  if (key) tr.dataset.key = key;
  tr.append(...cells);
  return tr;
}

function draw(data) {
  fill("nodes", data.nodes.map((n) => row([
    cell(n.node_id, "name"), cell(n.health, n.health),
    cell(`${n.last_contact_age_s.toFixed(1)} s ago`),
    cell(n.executions.toLocaleString()), cell(n.errors.toLocaleString()),
  ], "", n.node_id)));
  fill("tenants", data.tenants.map((t) => row([
    cell(t.tenant, "name"), cell(t.executions.toLocaleString()),
    cell(t.errors.toLocaleString()), cell(t.nodes.join(", ")),
  ], "", t.tenant)));
  const rows = [];
  for (const c of data.chains) {
    rows.push(row([cell(c.tenant, "name"), cell(c.chain, "name"), cell("whole chain", "name"),
      cell(c.executions.toLocaleString()), cell(c.errors.toLocaleString()),
      cell(ns(c.p50_ns)), cell(ns(c.p99_ns)), cell(c.nodes.length)], "chain",
      `${c.tenant}/${c.chain}/`));
    for (const s of c.steps) {
      rows.push(row([cell(""), cell(""), cell(s.step, "name"), cell(s.count.toLocaleString()),
        cell(s.errors.toLocaleString()), cell(ns(s.p50_ns)), cell(ns(s.p99_ns)),
        cell(s.nodes.length)], "step", `${c.tenant}/${c.chain}/${s.step}`));
    }
  }
  fill("chains", rows);
  document.getElementById("totals").textContent =
    `${data.nodes.length} nodes, ${data.executions.toLocaleString()} executions, ` +
    `${data.errors.toLocaleString()} errors`;
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const response = await fetch("/api/v1/overview", { cache: "no-store",
                                                       headers: authHeaders() });
    const data = await response.json();
    if (response.status === 401 || response.status === 403) {
      sessionStorage.removeItem(TOKEN_KEY);
      askForToken(`viewer token needed: ${data.error || response.status}`);
      return;  // no polling until a token is given
    }
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    document.getElementById("login").hidden = true;
    draw(data);
    status.textContent = `updated ${new Date(data.time_ns / 1e6).toLocaleTimeString()}`;
    status.className = "muted";
  } catch (error) {
    status.textContent = `hub unavailable: ${error.message}`;
    status.className = "error";
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("token");
  sessionStorage.setItem(TOKEN_KEY, input.value.trim());
  input.value = "";
  clearTimeout(timer);
  refresh();
});

takeTokenFromAddress();
refresh();
