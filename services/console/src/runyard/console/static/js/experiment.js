// One experiment's page: charts from the downsampled history read, zoom reads the finer range,
// live epochs and status changes (and stalled / resumed) from the event stream.
import { getJson, live } from "./app.js";
import { PALETTE, drawChart, groupMetrics } from "./chart.js";

const BUCKETS = 1000;
const root = document.getElementById("experiment");
const id = root.dataset.experiment;
const chartsEl = document.getElementById("charts");
const smoothingEl = document.getElementById("smoothing");
const xAxisEl = document.getElementById("x-axis");
const logEl = document.getElementById("log-scale");

let groups = JSON.parse(chartsEl.dataset.groups || "[]");
let history = null;
let zoom = null;
let charts = [];
let reloadTimer = null;

function metricNames() { return groups.flat(); }

let preloaded = chartsEl.dataset.history || "";

async function load(range) {
  if (!metricNames().length) return;
  const params = new URLSearchParams({ buckets: String(BUCKETS) });
  if (range) {
    params.set("from_epoch", String(Math.max(0, Math.floor(range[0]))));
    params.set("to_epoch", String(Math.max(0, Math.ceil(range[1]))));
  }
  for (const m of metricNames()) params.append("metric", m);
  // the first read is the one the page's head preloads (same URL, already on its way)
  const url = !range && preloaded ? preloaded : `/console-api/experiments/${id}/history?${params}`;
  preloaded = "";
  history = await getJson(url);
  zoom = range || null;
  render();
}

function linesOf(group) {
  const x = xAxisEl.value === "time" ? history.time : history.epoch;
  return group.map((metric, i) => {
    const s = history.series[metric] || { last: [], min: [], max: [] };
    return { label: metric, color: PALETTE[i % PALETTE.length], x, last: s.last, min: s.min, max: s.max };
  });
}

function mark() {
  chartsEl.dataset.points = String(history ? history.epoch.length : 0);
  chartsEl.dataset.fromEpoch = history && history.from_epoch !== null ? String(history.from_epoch) : "";
  chartsEl.dataset.toEpoch = history && history.to_epoch !== null ? String(history.to_epoch) : "";
  chartsEl.dataset.zoomed = zoom ? "true" : "false";
  chartsEl.dataset.lastEpoch = history && history.epoch.length ? String(history.epoch[history.epoch.length - 1]) : "";
  chartsEl.dataset.drawn = String(charts.length);
}

function render() {
  for (const c of charts) c.destroy();
  charts = [];
  chartsEl.textContent = "";
  if (!history) return;
  document.getElementById("no-epochs")?.remove();
  for (const group of groups) {
    const box = document.createElement("div");
    box.className = "chart";
    chartsEl.appendChild(box);
    charts.push(drawChart(box, {
      title: group.join(" · "),
      lines: linesOf(group),
      xTime: xAxisEl.value === "time",
      logScale: logEl.checked,
      smoothing: Number(smoothingEl.value),
      onZoom: (from, to) => { if (xAxisEl.value === "epoch") load([from, to]); },
    }));
  }
  mark();
}

function update() {
  charts.forEach((c, i) => c.setLines(linesOf(groups[i])));
  mark();
}

function scheduleReload() {
  if (reloadTimer) return;
  reloadTimer = setTimeout(() => { reloadTimer = null; load(zoom); }, 500);
}

function appendEpoch(d) {
  const names = Object.keys(d.latest_metrics || {});
  const known = new Set(metricNames());
  if (names.some((n) => !known.has(n))) {
    groups = groupMetrics(new Set([...known, ...names]));
    scheduleReload();
    return;
  }
  if (!history) { scheduleReload(); return; }
  const lastEpoch = history.epoch.length ? history.epoch[history.epoch.length - 1] : -1;
  if (zoom || d.first_epoch !== d.last_epoch || d.last_epoch <= lastEpoch) {
    if (!zoom) scheduleReload();
    return;
  }
  history.epoch.push(d.last_epoch);
  history.time.push(Date.parse(d.logged_at) / 1000);
  for (const metric of metricNames()) {
    const s = history.series[metric] || (history.series[metric] = { last: [], min: [], max: [] });
    const value = d.latest_metrics[metric] ?? null;
    s.last.push(value); s.min.push(value); s.max.push(value);
  }
  if (history.epoch.length > 2 * BUCKETS) scheduleReload();
  update();
}

function setText(elementId, text) {
  const el = document.getElementById(elementId);
  if (el) el.textContent = text;
}

function fmt(v) { return typeof v === "number" ? Number(v.toPrecision(4)).toString() : String(v); }

live.addEventListener("experiment.epochs_logged", (event) => {
  const d = event.detail;
  if (d.experiment_id !== id) return;
  if (root.dataset.stalled === "true") showStalled(null); // an epoch is a sign of life
  setText("total-epochs", d.total_epochs.toLocaleString());
  if (d.best_value !== null && d.best_value !== undefined) {
    setText("best", `${fmt(d.best_value)} (epoch ${d.best_epoch})`);
  }
  appendEpoch(d);
});

/** A running experiment silent for too long shows "stalled" until it reports again. */
function showStalled(d) {
  const since = d && d.stalled_at ? (d.last_seen_at || d.started_at || d.stalled_at) : null;
  document.getElementById("stalled").hidden = !since;
  document.getElementById("stalled-note").hidden = !since;
  if (since) setText("stalled-since", since.slice(0, 16).replace("T", " "));
  root.dataset.stalled = since ? "true" : "false";
}

async function statusChanged(d, type) {
  if (d.experiment_id !== id) return;
  showStalled(type === "stalled" ? d : null);
  const badge = document.getElementById("status");
  badge.textContent = d.status;
  badge.className = `status big s-${d.status}`;
  root.dataset.status = d.status;
  if (type === "stalled") return; // still running: the same buttons
  try {
    const html = await (await fetch(location.pathname, { credentials: "same-origin" })).text();
    const fresh = new DOMParser().parseFromString(html, "text/html").querySelector(".actions");
    const actions = document.querySelector(".actions");
    if (fresh && actions) actions.replaceWith(fresh);
  } catch (e) { /* the buttons refresh on the next load */ }
}

for (const type of ["started", "paused", "resumed", "completed", "failed", "cancelled", "stalled"]) {
  live.addEventListener(`experiment.${type}`, (event) => statusChanged(event.detail, type));
}
live.addEventListener("resync", () => load(zoom));

smoothingEl.addEventListener("input", () => {
  document.getElementById("smoothing-value").textContent = smoothingEl.value;
  if (history) update();
});
xAxisEl.addEventListener("change", () => { zoom = null; load(null); });
logEl.addEventListener("change", render);
document.getElementById("reset-zoom").addEventListener("click", () => load(null));
document.addEventListener("runyard:theme", render);
window.addEventListener("resize", () => charts.forEach((c) => c.resize()));

load(null);
