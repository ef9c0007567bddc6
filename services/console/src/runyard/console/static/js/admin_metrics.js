// The admin's request metrics: requests and errors, and p50/p95/p99 response times, per minute
// (or hour) for one endpoint, drawn with the vendored uPlot from the series the page carries.
import { currentTheme } from "./app.js";

const box = document.getElementById("metrics-charts");

function cssVar(name, fallback) {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}

function axes() {
  const fg = cssVar("--fg-muted", currentTheme() === "dark" ? "#aab" : "#555");
  const grid = cssVar("--grid", currentTheme() === "dark" ? "#2a2f3a" : "#e5e7eb");
  return [
    { stroke: fg, grid: { stroke: grid }, ticks: { stroke: grid } },
    { stroke: fg, grid: { stroke: grid }, ticks: { stroke: grid }, size: 56 },
  ];
}

function width(el) {
  return Math.max(260, Math.floor(el.getBoundingClientRect().width) - 18);
}

function draw() {
  const series = JSON.parse(box.dataset.series || "{}");
  const requestsBox = document.getElementById("requests-chart");
  const latencyBox = document.getElementById("latency-chart");
  const total = (series.requests || []).reduce((a, b) => a + (b || 0), 0);
  if (!series.x || series.x.length === 0 || total === 0) {
    requestsBox.textContent = "No requests in this period.";
    latencyBox.replaceChildren();
    box.dataset.drawn = "empty";
    return;
  }
  const accent = cssVar("--accent", "#2563eb");
  const danger = cssVar("--danger", "#c0362c");
  const warn = cssVar("--warn", "#b7791f");
  const bars = window.uPlot.paths.bars({ size: [0.6, 40] });
  // markers on every period only while they stay apart (a long quiet run is then a plain line)
  const few = series.x.length <= 120;
  requestsBox.replaceChildren();
  new window.uPlot(
    {
      title: "Requests and errors",
      width: width(requestsBox),
      height: 220,
      series: [
        { label: "time" },
        { label: "requests", stroke: accent, fill: accent + "55", paths: bars, points: { show: false } },
        { label: "errors", stroke: danger, width: 2, points: { show: few } },
      ],
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      axes: axes(),
    },
    [series.x, series.requests, series.errors],
    requestsBox,
  );
  latencyBox.replaceChildren();
  new window.uPlot(
    {
      // quiet periods have no latency: each busy one is drawn as a point, runs of them as lines
      title: "Response time (ms)",
      width: width(latencyBox),
      height: 220,
      series: [
        { label: "time" },
        { label: "p50", stroke: accent, width: 2, spanGaps: false, points: { show: true, size: 5 } },
        { label: "p95", stroke: warn, width: 2, spanGaps: false, points: { show: true, size: 5 } },
        { label: "p99", stroke: danger, width: 2, spanGaps: false, points: { show: true, size: 5 } },
      ],
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, (max ?? 1) * 1.1)] } },
      axes: axes(),
    },
    [series.x, series.p50, series.p95, series.p99],
    latencyBox,
  );
  box.dataset.drawn = String(total);
}

if (box) {
  draw();
  document.addEventListener("runyard:theme", draw);
}
