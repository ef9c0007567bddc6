// A dataset job's page: while the job is pending or running, read it every second and move the
// progress bar (jobs publish no progress events: only their end), then show its dataset or, if
// it failed, its error and the problems it found.
import { getJson } from "./app.js";

const root = document.getElementById("job");
const url = `/console-api/dataset-jobs/${root.dataset.kind}/${root.dataset.job}`;
const ACTIVE = new Set(["pending", "running"]);

function when(value) {
  return value ? value.replace("T", " ").slice(0, 16) : "—";
}

function problem(e) {
  const li = document.createElement("li");
  const place = (e.at || e.file || "").split("/").pop();
  const where = [place, e.row !== undefined && e.row !== null ? `row ${e.row}` : "", e.key,
    e.index !== undefined && e.index !== null ? `index ${e.index}` : ""].filter(Boolean).join(" ");
  li.textContent = (where ? where + ": " : "") + e.msg;
  return li;
}

function show(job) {
  root.dataset.status = job.status;
  const status = document.getElementById("status");
  status.textContent = job.status;
  status.className = `status big s-${job.status}`;
  const bar = document.getElementById("progress");
  bar.value = job.progress;
  bar.textContent = `${job.progress}%`;
  document.getElementById("progress-value").textContent = `${job.progress}%`;
  document.getElementById("num-signals").textContent = job.num_signals.toLocaleString("en-US");
  document.getElementById("attempts").textContent = String(job.attempts);
  document.getElementById("started").textContent = when(job.started_at);
  document.getElementById("ended").textContent = when(job.ended_at);
  if (job.dataset_id) {
    document.getElementById("open-dataset").href = `/datasets/${job.dataset_id}`;
    document.getElementById("dataset-link").hidden = false;
  }
  if (job.status === "failed") {
    document.getElementById("error-message").textContent = job.error_message || "";
    const list = document.getElementById("error-list");
    list.textContent = "";
    for (const e of (job.errors || []).slice(0, 100)) list.appendChild(problem(e));
    document.getElementById("job-error").hidden = false;
  }
  if (!ACTIVE.has(job.status)) document.getElementById("cancel-form")?.remove();
}

async function poll() {
  if (!ACTIVE.has(root.dataset.status)) return;
  try {
    show(await getJson(url));
  } catch (e) { /* try again at the next tick */ }
  setTimeout(poll, document.hidden ? 5000 : 1000);
}

setTimeout(poll, 500);
