// Overlay the curves of 2-10 experiments: one chart per metric group, a colour per experiment,
// train dashed and val solid.
import { getJson } from "./app.js";
import { PALETTE, drawChart } from "./chart.js";

const el = document.getElementById("compare-charts");
if (el) {
  const names = JSON.parse(el.dataset.names);
  const groups = JSON.parse(el.dataset.groups);
  const smoothingEl = document.getElementById("smoothing");
  const logEl = document.getElementById("log-scale");
  let histories = [];
  let charts = [];

  function linesOf(group) {
    const lines = [];
    histories.forEach((h, i) => {
      for (const metric of group) {
        const s = h.series[metric];
        if (!s || !s.last.some((v) => v !== null)) continue;
        lines.push({ label: `${names[i]} ${metric}`, color: PALETTE[i % PALETTE.length],
          dash: metric.startsWith("train_") ? [6, 4] : undefined, x: h.epoch, last: s.last, min: s.min, max: s.max });
      }
    });
    return lines;
  }

  function render() {
    for (const c of charts) c.destroy();
    charts = [];
    el.textContent = "";
    for (const group of groups) {
      const lines = linesOf(group);
      if (!lines.length) continue;
      const box = document.createElement("div");
      box.className = "chart";
      el.appendChild(box);
      charts.push(drawChart(box, { title: group.join(" · "), lines, xTime: false,
        logScale: logEl.checked, smoothing: Number(smoothingEl.value) }));
    }
    el.dataset.drawn = String(charts.length);
  }

  async function load() {
    // the URL the page's head preloads: the read started before these scripts ran
    histories = (await getJson(el.dataset.histories)).items;
    el.dataset.parsedMs = String(Math.round(performance.now()));
    render();
    el.dataset.drawnMs = String(Math.round(performance.now()));
  }

  smoothingEl.addEventListener("input", () => {
    document.getElementById("smoothing-value").textContent = smoothingEl.value;
    render();
  });
  logEl.addEventListener("change", render);
  document.addEventListener("runyard:theme", render);
  load();
}
