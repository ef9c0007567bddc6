// A model version's prediction stats: latency percentiles and prediction count over the
// window (the stats series the page read in one request, a point per bucket at its end), and
// the confidence histogram, drawn with the vendored uPlot (window.uPlot).
import { currentTheme } from "./app.js";
import { PALETTE } from "./chart.js";

function cssVar(name, fallback) {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}

function axes() {
  const fg = cssVar("--fg-muted", currentTheme() === "dark" ? "#aab" : "#555");
  const grid = cssVar("--grid", currentTheme() === "dark" ? "#2a2f3a" : "#e5e7eb");
  const axis = { stroke: fg, grid: { stroke: grid }, ticks: { stroke: grid } };
  return [axis, { ...axis, size: 60 }];
}

function width(container) {
  return Math.max(260, Math.floor(container.getBoundingClientRect().width) - 18);
}

function plot(container, series, data, scales) {
  return new window.uPlot(
    { width: width(container), height: 220, series, scales, axes: axes(), legend: { live: true } },
    data, container,
  );
}

function draw() {
  const source = document.getElementById("chart-data");
  if (!source || !window.uPlot) return [];
  const { series, histogram } = JSON.parse(source.textContent);
  const line = (label, color) => ({ label, stroke: color, width: 1.5, spanGaps: true });
  const charts = [];
  const latency = document.getElementById("chart-latency");
  charts.push([latency, plot(latency, [{ label: "time" }, line("p50", PALETTE[0]),
    line("p95", PALETTE[1]), line("p99", PALETTE[2])],
  [series.t, series.p50, series.p95, series.p99], { x: { time: true } })]);
  const count = document.getElementById("chart-count");
  const bars = window.uPlot.paths.bars({ size: [0.6, 40] });
  charts.push([count, plot(count, [{ label: "time" },
    { label: "predictions", stroke: PALETTE[0], fill: PALETTE[0] + "55", paths: bars },
    { label: "error rate", stroke: PALETTE[1], width: 1.5, scale: "rate", spanGaps: true }],
  [series.t, series.count, series.error_rate], { x: { time: true }, rate: { range: [0, 1] } })]);
  const confidence = document.getElementById("chart-confidence");
  const mids = histogram.map((b) => (b.lower + b.upper) / 2);
  charts.push([confidence, plot(confidence, [{ label: "confidence" },
    { label: "predictions", stroke: PALETTE[2], fill: PALETTE[2] + "55",
      paths: window.uPlot.paths.bars({ size: [0.9, 80] }) }],
  [mids, histogram.map((b) => b.count)], { x: { time: false, range: [0, 1] } })]);
  return charts;
}

let charts = [];
function start() {
  charts.forEach(([, c]) => c.destroy());
  charts = draw();
}
if (document.readyState === "complete") start();
else addEventListener("load", start, { once: true });
addEventListener("resize", () => {
  for (const [container, chart] of charts) chart.setSize({ width: width(container), height: 220 });
});
document.addEventListener("runyard:theme", start);
