// A campaign's page: the objective per trial with the best so far, one hyperparameter (or, for
// an architecture search, one measure) against the objective, and the trials table; read again
// as trials report over the page's live stream (HPO: their experiments' events; NAS:
// `nas_trial.completed`), and now and then only while the stream is down.
import { live, getJson, currentTheme } from "./app.js";
import { PALETTE } from "./chart.js";

const root = document.getElementById("campaign");
const kind = root.dataset.kind;
const campaignId = root.dataset.campaign;
const maximize = root.dataset.direction !== "minimize";
let state = JSON.parse(document.getElementById("campaign-state").dataset.state);
const charts = {};

export function fmt(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "boolean") return String(v);
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return v.toLocaleString("en-US");
  if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e6)) return v.toExponential(3);
  return String(Number(v.toPrecision(4)));
}

function trialsOf(s) {
  if (kind === "hpo") {
    return s.trials.map((t) => ({ n: t.number, value: t.value, params: t.params || {}, raw: t }));
  }
  return s.trials.map((t) => ({
    n: t.trial_number, value: t.validation_accuracy,
    params: { num_parameters: t.num_parameters, flops: t.flops, model_size_mb: t.model_size_mb,
      training_time: t.training_time, validation_loss: t.validation_loss }, raw: t,
  }));
}

/** Per trial: its objective and the best of it and every trial before. */
export function bestSoFar(values, higherIsBetter) {
  let best = null;
  return values.map((v) => {
    if (v !== null && v !== undefined && Number.isFinite(v)) {
      if (best === null || (higherIsBetter ? v > best : v < best)) best = v;
    }
    return best;
  });
}

function colors() {
  const dark = currentTheme() === "dark";
  return { fg: dark ? "#aab" : "#555", grid: dark ? "#2a2f3a" : "#e5e7eb" };
}

/** Tick steps of an axis of whole numbers (trial numbers, a categorical's positions). */
const WHOLE = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];

function axes(xLabel, yLabel, xValues, whole) {
  const { fg, grid } = colors();
  const x = { stroke: fg, grid: { stroke: grid }, ticks: { stroke: grid }, label: xLabel };
  if (xValues) x.values = xValues;
  if (whole) x.incrs = whole;
  return [x, { stroke: fg, grid: { stroke: grid }, ticks: { stroke: grid }, size: 60, label: yLabel }];
}

function draw(id, opts, data) {
  const el = document.getElementById(id);
  if (charts[id]) charts[id].destroy();
  el.textContent = "";
  const width = Math.max(260, Math.floor(el.getBoundingClientRect().width) - 18);
  charts[id] = new window.uPlot({ width, height: 260, legend: { live: true }, ...opts }, data, el);
  el.dataset.points = String(data[1].filter((v) => v !== null && v !== undefined).length);
}

function drawObjective(trials) {
  const sorted = [...trials].sort((a, b) => a.n - b.n);
  const xs = sorted.map((t) => t.n);
  const ys = sorted.map((t) => (typeof t.value === "number" ? t.value : null));
  const metric = root.dataset.metric;
  draw("objective-chart", {
    title: `${metric} per trial`,
    scales: { x: { time: false } },
    axes: axes("trial", metric, null, WHOLE),
    series: [
      { label: "trial" },
      { label: metric, stroke: PALETTE[0], width: 0, paths: () => null,
        points: { show: true, size: 7, fill: PALETTE[0] } },
      { label: "best so far", stroke: PALETTE[2], width: 2, spanGaps: true,
        paths: window.uPlot.paths.stepped({ align: 1 }), points: { show: false } },
    ],
  }, [xs, ys, bestSoFar(ys, maximize)]);
}

function drawScatter(trials) {
  const select = document.getElementById("scatter-param");
  const name = select?.value;
  if (!name) return;
  const pairs = trials
    .filter((t) => typeof t.value === "number" && t.params[name] !== undefined && t.params[name] !== null)
    .map((t) => [t.params[name], t.value]);
  let labels = null;
  if (pairs.some(([x]) => typeof x !== "number")) {
    labels = [...new Set(pairs.map(([x]) => String(x)))].sort();
    for (const p of pairs) p[0] = labels.indexOf(String(p[0]));
  }
  pairs.sort((a, b) => a[0] - b[0]);
  const space = kind === "hpo" ? (state.campaign.search_space || {})[name] || {} : {};
  const log = !labels && space.log === true && pairs.every(([x]) => x > 0);
  const metric = root.dataset.metric;
  draw("scatter-chart", {
    title: `${metric} against ${name}`,
    scales: { x: { time: false, distr: log ? 3 : 1,
      ...(labels ? { range: () => [-0.5, labels.length - 0.5] } : {}) } },
    axes: axes(name, metric,
      labels ? (u, ticks) => ticks.map((t) => (Number.isInteger(t) ? labels[t] ?? "" : "")) : null,
      labels ? [1] : null),
    series: [
      { label: name, value: labels ? (u, v) => (v === null ? "—" : labels[v] ?? "") : undefined },
      { label: metric, stroke: PALETTE[1], width: 0, paths: () => null,
        points: { show: true, size: 8, fill: PALETTE[1] } },
    ],
  }, [pairs.map((p) => p[0]), pairs.map((p) => p[1])]);
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  td.textContent = text;
  tr.appendChild(td);
  return td;
}

/** JSON with sorted keys, indented like the server's rendering of an architecture. */
function sortedJson(value) {
  const sort = (v) => (Array.isArray(v) ? v.map(sort)
    : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort(v[k])]))
      : v);
  return JSON.stringify(sort(value ?? {}), null, 2);
}

function renderNasTable(tbody) {
  const open = new Set([...tbody.querySelectorAll("details[open]")]
    .map((d) => d.closest("tr")?.dataset.trial));
  tbody.textContent = "";
  for (const t of state.trials) {
    const tr = document.createElement("tr");
    tr.dataset.trial = String(t.trial_number);
    cell(tr, String(t.trial_number), "num");
    for (const k of ["validation_accuracy", "validation_loss", "num_parameters", "flops",
      "model_size_mb", "training_time"]) cell(tr, fmt(t[k]), "num");
    const details = document.createElement("details");
    if (open.has(String(t.trial_number))) details.open = true;
    const summary = document.createElement("summary");
    summary.textContent = (t.architecture_hash || "").slice(0, 10);
    const pre = document.createElement("pre");
    pre.className = "code arch";
    const code = document.createElement("code");
    code.textContent = sortedJson(t.architecture);
    pre.appendChild(code);
    details.append(summary, pre);
    cell(tr, "").appendChild(details);
    tbody.appendChild(tr);
  }
}

function renderTable() {
  const tbody = document.querySelector("#trials tbody");
  if (kind === "nas") {
    if (state.trials.length) renderNasTable(tbody);
    return;
  }
  const params = Object.keys(state.campaign.search_space || {});
  tbody.textContent = "";
  for (const t of state.trials) {
    const tr = document.createElement("tr");
    tr.dataset.trial = String(t.number);
    cell(tr, fmt(t.number), "num");
    const status = document.createElement("span");
    status.className = `status s-${t.state}`;
    status.textContent = t.state;
    cell(tr, "").appendChild(status);
    cell(tr, fmt(t.value), "num");
    cell(tr, t.pruned_at_step === null ? "—" : fmt(t.pruned_at_step), "num");
    for (const p of params) cell(tr, fmt((t.params || {})[p]), "num");
    const link = document.createElement("a");
    link.href = `/experiments/${t.experiment_id}`;
    link.textContent = "open";
    cell(tr, "").appendChild(link);
    tbody.appendChild(tr);
  }
}

function renderFacts() {
  const c = state.campaign;
  const status = document.getElementById("status");
  status.textContent = c.status;
  status.className = `status big s-${c.status}`;
  root.dataset.status = c.status;
  const count = document.getElementById("trial-count");
  const best = document.getElementById("best");
  if (kind === "hpo") {
    count.textContent = `${c.trials_completed} done, ${c.trials_started} started, of ${c.budget.max_trials}`;
    best.textContent = fmt(c.best_value);
  } else {
    count.textContent = `${c.trials_completed} of ${c.num_trials}`;
    best.textContent = fmt(c.best_accuracy);
  }
}

function render() {
  const trials = trialsOf(state);
  drawObjective(trials);
  drawScatter(trials);
  root.dataset.trials = String(state.trials.length);
}

let pending = null;
// an event that comes while a read is on its way may concern a trial that read will not show
// yet (its experiment unknown to the old state): read once more after it
let loading = false;
let again = false;
async function refresh() {
  pending = null;
  loading = true;
  again = false;
  try {
    state = await getJson(`/console-api/${kind}-campaigns/${campaignId}`);
    renderFacts();
    renderTable();
    render();
  } catch (e) { /* the next event or tick tries again */ }
  finally {
    loading = false;
    if (again) soon();
  }
}

function soon() {
  if (!pending) pending = setTimeout(refresh, 400);
}

const active = () => ["pending", "running"].includes(root.dataset.status);

function start() {
  render();
  document.getElementById("scatter-param")?.addEventListener("change", () => drawScatter(trialsOf(state)));
  document.addEventListener("runyard:theme", render);
  addEventListener("resize", () => { clearTimeout(charts.resizing); charts.resizing = setTimeout(render, 150); });
  if (kind === "hpo") {
    // trials are experiments: their lifecycle and epochs arrive on the page's event stream
    live.addEventListener("any", (event) => {
      const { type, experiment_id: id } = event.detail;
      if (type === "resync" || type === "experiment.created") return soon();
      if (id && (pending || loading)) { again = true; return; }
      if (id && state.trials.some((t) => t.experiment_id === id)) soon();
    });
  } else {
    // an architecture search's trials announce themselves (`nas_trial.completed`)
    live.addEventListener("any", (event) => {
      const { type, campaign_id: id } = event.detail;
      if (type === "resync") return soon();
      if (id === campaignId && (type === "nas_trial.completed" || type === "nas_campaign.completed")) {
        root.dataset.events = String(Number(root.dataset.events || 0) + 1);
        soon();
      }
    });
  }
  // what may have happened between the page's rendering (or a gap in the stream) and now
  live.addEventListener("hello", () => { if (active()) soon(); });
  // a page without its stream falls back to reading
  setInterval(() => {
    if (document.hidden || !active()) return;
    if (document.body.dataset.liveConnected === "true") return;
    refresh();
  }, 15000);
}

if (window.uPlot) start();
else addEventListener("load", start, { once: true });
