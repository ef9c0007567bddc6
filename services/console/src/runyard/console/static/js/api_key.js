// An API key's use over time: requests per minute (or hour) and how many were refused, drawn
// with the vendored uPlot from the series the page carries.
import { currentTheme } from "./app.js";

const PALETTE_OK = "#2f7ed8";

const box = document.getElementById("usage-chart");

function cssVar(name, fallback) {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}

function draw() {
  const series = JSON.parse(box.dataset.series || "{}");
  if (!series.x || series.x.length === 0) {
    box.textContent = "No requests yet.";
    box.dataset.drawn = "empty";
    return;
  }
  const fg = cssVar("--fg-muted", currentTheme() === "dark" ? "#aab" : "#555");
  const grid = cssVar("--grid", currentTheme() === "dark" ? "#2a2f3a" : "#e5e7eb");
  const bars = window.uPlot.paths.bars({ size: [0.6, 40] });
  const width = Math.max(260, Math.floor(box.getBoundingClientRect().width) - 18);
  const opts = {
    title: "Requests",
    width,
    height: 220,
    series: [
      { label: "time" },
      { label: "requests", stroke: PALETTE_OK, fill: PALETTE_OK + "55", paths: bars, points: { show: false } },
      { label: "refused", stroke: cssVar("--danger", "#c0362c"), width: 2, points: { show: true } },
    ],
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
    axes: [
      { stroke: fg, grid: { stroke: grid }, ticks: { stroke: grid } },
      { stroke: fg, grid: { stroke: grid }, ticks: { stroke: grid }, size: 50 },
    ],
  };
  box.replaceChildren();
  new window.uPlot(opts, [series.x, series.requests, series.errors], box);
  box.dataset.drawn = String(series.requests.reduce((a, b) => a + b, 0));
}

if (box) {
  draw();
  document.addEventListener("runyard:theme", draw);
}
