// Charts of downsampled histories with uPlot (vendored, window.uPlot): per line the last value
// of each bucket, and a band between the bucket's min and max so spikes stay visible.
import { currentTheme } from "./app.js";

export const PALETTE = ["#2f7ed8", "#e4572e", "#29a36a", "#a05fd6", "#f2a541",
  "#17becf", "#d62f8b", "#8c6d31", "#5f7bd6", "#6b7280"];

/** Exponential moving average (TensorBoard's, debiased); nulls stay nulls. */
export function ema(values, weight) {
  if (!weight) return values;
  const out = new Array(values.length);
  let acc = 0;
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || v === undefined || !Number.isFinite(v)) { out[i] = null; continue; }
    acc = acc * weight + (1 - weight) * v;
    n += 1;
    out[i] = acc / (1 - Math.pow(weight, n));
  }
  return out;
}

function positive(values) {
  return values.map((v) => (v !== null && v > 0 ? v : null));
}

function cssVar(name, fallback) {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}

/**
 * lines: [{label, color, dash, x, last, min, max}]; lines with different x are joined.
 * Returns {plot, setLines(lines)}.
 */
export function drawChart(container, { title, lines, xTime, logScale, smoothing, onZoom }) {
  const build = (input) => {
    const tables = input.map((l) => {
      let last = ema(l.last, smoothing);
      let min = l.min;
      let max = l.max;
      if (logScale) { last = positive(last); min = positive(min); max = positive(max); }
      return [l.x, last, min, max];
    });
    if (tables.length === 1) return tables[0];
    return window.uPlot.join(tables);
  };
  const fg = cssVar("--fg-muted", currentTheme() === "dark" ? "#aab" : "#555");
  const grid = cssVar("--grid", currentTheme() === "dark" ? "#2a2f3a" : "#e5e7eb");
  const series = [{ label: xTime ? "time" : "epoch" }];
  const bands = [];
  lines.forEach((l, i) => {
    const base = 1 + i * 3;
    series.push({ label: l.label, stroke: l.color, width: 1.5, dash: l.dash, spanGaps: true,
      points: { show: false } });
    series.push({ label: l.label + " min", stroke: "transparent", spanGaps: true,
      points: { show: false }, class: "band-edge" });
    series.push({ label: l.label + " max", stroke: "transparent", spanGaps: true,
      points: { show: false }, class: "band-edge" });
    bands.push({ series: [base + 2, base + 1], fill: l.color + "2e" });
  });
  const width = Math.max(260, Math.floor(container.getBoundingClientRect().width) - 18);
  const opts = {
    title,
    width,
    height: 240,
    series,
    bands,
    scales: { x: { time: !!xTime }, y: { distr: logScale ? 3 : 1 } },
    axes: [
      { stroke: fg, grid: { stroke: grid }, ticks: { stroke: grid } },
      { stroke: fg, grid: { stroke: grid }, ticks: { stroke: grid }, size: 60 },
    ],
    legend: { live: true },
    cursor: { drag: { x: true, y: false, setScale: true } },
    hooks: {
      setSelect: [(u) => {
        if (u.select.width > 4 && onZoom) {
          onZoom(u.posToVal(u.select.left, "x"), u.posToVal(u.select.left + u.select.width, "x"));
        }
      }],
    },
  };
  const plot = new window.uPlot(opts, build(lines), container);
  return {
    plot,
    setLines(next) { plot.setData(build(next)); },
    resize() {
      const w = Math.floor(container.getBoundingClientRect().width) - 18;
      plot.setSize({ width: Math.max(260, w), height: 240 });
    },
    destroy() { plot.destroy(); },
  };
}

/** One chart per group of metrics: train_x and val_x together. */
export function groupMetrics(names) {
  const groups = new Map();
  for (const name of [...names].sort()) {
    const base = name.replace(/^(train_|val_)/, "");
    if (!groups.has(base)) groups.set(base, []);
    groups.get(base).push(name);
  }
  return [...groups.values()].map((g) => g.sort((a, b) => (a.startsWith("train_") ? -1 : 0) - (b.startsWith("train_") ? -1 : 0) || a.localeCompare(b)));
}
