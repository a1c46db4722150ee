// sessionshare dashboard: polls ./live twice a second and redraws. No framework, no CDN.
"use strict";

const LIVE_URL = "live";
// Node states come from the supervisor at request time, so a fast poll shows a crash at
// once; the counters behind the chart are sampled once a second on the server.
const INTERVAL_MS = 500;

function cell(row, text, className) {
  const td = row.insertCell();
  if (text instanceof Node) td.appendChild(text); else td.textContent = text ?? "–";
  if (className) td.className = className;
  return td;
}

function badge(text, kind) {
  const span = document.createElement("span");
  span.className = "badge " + kind;
  span.textContent = text;
  return span;
}

function healthBadge(item) {
  if (item.healthy) return badge("healthy", "ok");
  if (item.state === "restarting") return badge("down · restarting", "bad");
  if (item.state === "starting") return badge("starting", "warn");
  if (item.state === "unhealthy") return badge("unhealthy", "bad");
  return badge("down", "bad");
}

function sparkline(values) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const width = 160, height = 28, count = 60;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "spark");
  const base = document.createElementNS(ns, "line");
  base.setAttribute("x1", 0); base.setAttribute("x2", width);
  base.setAttribute("y1", height - 1); base.setAttribute("y2", height - 1);
  svg.appendChild(base);
  const max = Math.max(1, ...values);
  const step = width / (count - 1);
  const offset = count - values.length;
  const points = values.map((v, i) =>
    `${((offset + i) * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points.join(" "));
  svg.appendChild(line);
  const title = document.createElementNS(ns, "title");
  title.textContent = `peak ${max} req/s`;
  svg.appendChild(title);
  return svg;
}

function ratio(value) {
  return value === null || value === undefined ? "–" : (value * 100).toFixed(1) + " %";
}

function renderNodes(nodes) {
  const body = document.querySelector("#nodes tbody");
  body.replaceChildren();
  for (const node of nodes) {
    const row = body.insertRow();
    row.dataset.node = node.name;
    row.dataset.healthy = String(node.healthy);
    row.dataset.state = node.state || "";
    cell(row, node.name);
    cell(row, node.route);
    cell(row, healthBadge(node));
    cell(row, node.pid);
    cell(row, (node.rps ?? 0).toFixed(1), "num");
    cell(row, sparkline(node.history || []));
    cell(row, node.requests, "num");
    cell(row, node.sessions, "num");
    cell(row, node.restarts, "num");
  }
}

function renderStores(stores) {
  const body = document.querySelector("#stores tbody");
  body.replaceChildren();
  for (const store of stores) {
    const row = body.insertRow();
    row.dataset.store = store.id;
    row.dataset.healthy = String(store.healthy);
    cell(row, store.id);
    cell(row, store.kind);
    cell(row, store.address);
    cell(row, healthBadge(store));
    cell(row, store.pid);
    cell(row, store.items, "num");
    cell(row, ratio(store.hit_ratio), "num");
    cell(row, store.relocations, "num");
    cell(row, store.lock_waits, "num");
  }
}

function renderEvents(events) {
  const list = document.getElementById("events");
  list.replaceChildren();
  for (const event of events.slice().reverse()) {
    const item = document.createElement("li");
    item.dataset.kind = event.kind;
    if (event.bad) item.className = "bad";
    const time = document.createElement("time");
    time.textContent = new Date(event.time * 1000).toLocaleTimeString();
    item.append(time, event.message);
    list.appendChild(item);
  }
}

function render(data) {
  renderNodes(data.nodes);
  renderStores(data.stores);
  renderEvents(data.events || []);
  const healthy = data.nodes.filter((n) => n.healthy).length;
  const totals = data.totals || {};
  document.getElementById("summary").textContent =
    `${healthy}/${data.nodes.length} nodes healthy · store ${data.topology.store} · ` +
    `${data.balancer.policy} · ${totals.requests ?? 0} requests · ` +
    `${totals.relocations ?? 0} relocations · ${totals.lock_waits ?? 0} lock waits`;
  document.getElementById("balancer").textContent =
    `${data.balancer.url} (${data.balancer.kind}, pid ${data.balancer.pid})`;
}

async function refresh() {
  const connection = document.getElementById("connection");
  try {
    const response = await fetch(LIVE_URL, { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
    connection.textContent = "live";
    connection.className = "badge ok";
  } catch (error) {
    connection.textContent = "balancer unreachable";
    connection.className = "badge bad";
  } finally {
    setTimeout(refresh, INTERVAL_MS);
  }
}

refresh();
