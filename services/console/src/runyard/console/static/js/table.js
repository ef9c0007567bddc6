// The experiments table, live: epochs, best values and statuses of the rows shown change as
// events arrive; new experiments are announced.
import { live } from "./app.js";

function row(id) { return document.querySelector(`tr[data-experiment="${CSS.escape(id)}"]`); }
function cell(tr, field) { return tr ? tr.querySelector(`[data-field="${field}"]`) : null; }
function fmt(v) { return typeof v === "number" ? Number(v.toPrecision(4)).toString() : String(v); }
function now() { return new Date().toISOString().slice(0, 16).replace("T", " "); }

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
});

for (const type of ["started", "paused", "resumed", "completed", "failed", "cancelled", "updated"]) {
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
  });
}

live.addEventListener("experiment.created", () => {
  const notice = document.getElementById("new-experiments");
  if (notice) notice.hidden = false;
});
live.addEventListener("experiment.deleted", (event) => {
  row(event.detail.experiment_id)?.classList.add("gone");
});
