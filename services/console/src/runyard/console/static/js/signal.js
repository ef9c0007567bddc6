// One signal's waveform: the API's min/max buckets of its stored samples drawn as a band with
// the bucket's middle as the line; dragging across reads the finer samples of that range.
import { currentTheme } from "./app.js";
import { PALETTE } from "./chart.js";

const box = document.getElementById("waveform");
const baseUrl = box.dataset.samples;
const buckets = Number(box.dataset.buckets);
let plot = null;
let rate = 1;

function show(body) {
  rate = body.sample_rate_hz || 1;
  document.getElementById("num-samples").textContent =
    `${body.num_samples.toLocaleString("en-US")} at ${body.sample_rate_hz.toLocaleString("en-US")} Hz`;
  const x = body.index.map((i) => i / rate);
  const mid = body.min.map((v, i) => (v + body.max[i]) / 2);
  const data = [x, mid, body.min, body.max];
  box.dataset.points = String(x.length);
  box.dataset.from = String(body.from_index ?? "");
  box.dataset.to = String(body.to_index ?? "");
  if (plot) { plot.setData(data); return; }
  const dark = currentTheme() === "dark";
  const fg = dark ? "#aab" : "#555";
  const grid = dark ? "#2a2f3a" : "#e5e7eb";
  const color = PALETTE[0];
  plot = new window.uPlot({
    width: Math.max(300, Math.floor(box.getBoundingClientRect().width) - 18),
    height: 300,
    scales: { x: { time: false } },
    axes: [
      { stroke: fg, grid: { stroke: grid }, ticks: { stroke: grid }, label: "seconds" },
      { stroke: fg, grid: { stroke: grid }, ticks: { stroke: grid }, size: 60 },
    ],
    series: [
      { label: "t (s)" },
      { label: "amplitude", stroke: color, width: 1, points: { show: false } },
      { label: "min", stroke: "transparent", points: { show: false }, class: "band-edge" },
      { label: "max", stroke: "transparent", points: { show: false }, class: "band-edge" },
    ],
    bands: [{ series: [3, 2], fill: color + "55" }],
    cursor: { drag: { x: true, y: false, setScale: false } },
    hooks: {
      setSelect: [(u) => {
        if (u.select.width < 4) return;
        const from = Math.max(0, Math.floor(u.posToVal(u.select.left, "x") * rate));
        const to = Math.ceil(u.posToVal(u.select.left + u.select.width, "x") * rate);
        u.setSelect({ left: 0, width: 0 }, false);
        load(from, to);
      }],
    },
  }, data, box);
}

async function load(from, to) {
  const query = new URLSearchParams({ buckets: String(buckets) });
  if (from !== undefined) { query.set("from_index", String(from)); query.set("to_index", String(to)); }
  const error = document.getElementById("waveform-error");
  try {
    const response = await fetch(`${baseUrl}?${query}`, {
      headers: { accept: "application/json", "x-console-page": location.pathname },
      credentials: "same-origin",
    });
    const body = await response.json().catch(() => ({}));
    if (response.status === 401 && body.login) { location.href = body.login; return; }
    if (!response.ok) throw new Error(body.detail || body.title || `HTTP ${response.status}`);
    error.hidden = true;
    show(body);
  } catch (e) {
    error.textContent = `The samples could not be read: ${e.message}`;
    error.hidden = false;
    box.dataset.points = "0";
  }
}

function start() {
  document.getElementById("reset-zoom").addEventListener("click", () => load());
  load();
}

if (window.uPlot) start();
else addEventListener("load", start, { once: true });
