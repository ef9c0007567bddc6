// The experiments table, live: epochs, best values and statuses of the rows shown change as
// events arrive (a running experiment gone silent shows "stalled" until it reports again); new
// experiments are announced.
import { live } from "./app.js";

function row(id) { return document.querySelector(`tr[data-experiment="${CSS.escape(id)}"]`); }
function cell(tr, field) { return tr ? tr.querySelector(`[data-field="${field}"]`) : null; }
function fmt(v) { return typeof v === "number" ? Number(v.toPrecision(4)).toString() : String(v); }
function now() { return new Date().toISOString().slice(0, 16).replace("T", " "); }
/** The row's "stalled" badge: shown with its silence's start (d: the stalled event), or hidden. */
function stalled(tr, d) {
  const badge = cell(tr, "stalled");
  if (!badge) return;
  const since = d && d.stalled_at ? (d.last_seen_at || d.started_at || d.stalled_at) : null;
  badge.hidden = !since;
  badge.title = since ? `No heartbeat or epoch since ${since.slice(0, 16).replace("T", " ")} UTC` : "";
}

live.addEventListener("experiment.epochs_logged", (event) => {
  const d = event.detail;
  const tr = row(d.experiment_id);
  if (!tr) return;
  const epochs = cell(tr, "epochs");
  if (epochs) epochs.textContent = d.total_epochs.toLocaleString("en-US");
  const best = cell(tr, "best");
  if (best && d.best_value !== null && d.best_value !== undefined) {
    const metric = best.textContent.split(" ")[0];
    best.textContent = `${metric && metric !== "—" ? metric : "best"} ${fmt(d.best_value)}`;
  }
  const updated = cell(tr, "updated");
  if (updated) updated.textContent = now();
  const status = cell(tr, "status");
  if (status && status.textContent !== d.status) {
    status.textContent = d.status;
    status.className = `status s-${d.status}`;
  }
  stalled(tr, null); // an epoch is a sign of life
});

for (const type of ["started", "paused", "resumed", "completed", "failed", "cancelled", "updated",
  "stalled"]) {
  live.addEventListener(`experiment.${type}`, (event) => {
    const d = event.detail;
    const tr = row(d.experiment_id);
    const status = cell(tr, "status");
    if (status) {
      status.textContent = d.status;
      status.className = `status s-${d.status}`;
      const updated = cell(tr, "updated");
      if (updated) updated.textContent = now();
    }
    // stalled only while running: any other change (or a resume) ends it
    if (type === "stalled") stalled(tr, d);
    else if (type !== "updated" || d.status !== "running") stalled(tr, null);
  });
}

live.addEventListener("experiment.created", () => {
  const notice = document.getElementById("new-experiments");
  if (notice) notice.hidden = false;
});
live.addEventListener("experiment.deleted", (event) => {
  row(event.detail.experiment_id)?.classList.add("gone");
});
