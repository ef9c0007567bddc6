// A dataset job's page: the progress bar moves with the job's `*.progressed` events over the
// page's live stream, and its end (`*.completed` / `*.failed`) shows its dataset or its error
// and the problems it found. The API is read only when events may have been missed (the
// stream's hello, a resync) and, slowly, while the stream is down.
import { live, getJson } from "./app.js";

const root = document.getElementById("job");
const url = `/console-api/dataset-jobs/${root.dataset.kind}/${root.dataset.job}`;
const prefix = root.dataset.kind === "imports" ? "dataset_import." : "dataset_generation.";
const ACTIVE = new Set(["pending", "running"]);
const FALLBACK_MS = 5000;

function when(value) {
  return value ? value.replace("T", " ").slice(0, 16) : "—";
}

function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  let s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  let m = Math.floor(s / 60); s %= 60;
  if (m < 60) return `${m}m ${String(s).padStart(2, "0")}s`;
  const h = Math.floor(m / 60); m %= 60;
  if (h < 48) return `${h}h ${String(m).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

function problem(e) {
  const li = document.createElement("li");
  const place = (e.at || e.file || "").split("/").pop();
  const where = [place, e.row !== undefined && e.row !== null ? `row ${e.row}` : "", e.key,
    e.index !== undefined && e.index !== null ? `index ${e.index}` : ""].filter(Boolean).join(" ");
  li.textContent = (where ? where + ": " : "") + e.msg;
  return li;
}

function setText(id, text) {
  const el = document.getElementById(id);
  if (el) el.textContent = text;
}

function showStatus(status) {
  root.dataset.status = status;
  const el = document.getElementById("status");
  el.textContent = status;
  el.className = `status big s-${status}`;
  if (!ACTIVE.has(status)) document.getElementById("cancel-form")?.remove();
}

function showProgress(progress) {
  const bar = document.getElementById("progress");
  bar.value = progress;
  bar.textContent = `${progress}%`;
  setText("progress-value", `${progress}%`);
}

function showDataset(datasetId) {
  if (!datasetId) return;
  document.getElementById("open-dataset").href = `/datasets/${datasetId}`;
  document.getElementById("dataset-link").hidden = false;
}

function showFailure(message, errors) {
  setText("error-message", message || "");
  const list = document.getElementById("error-list");
  list.textContent = "";
  for (const e of (errors || []).slice(0, 100)) list.appendChild(problem(e));
  document.getElementById("job-error").hidden = false;
}

/** The job as the API has it. */
function show(job) {
  showStatus(job.status);
  showProgress(job.progress);
  setText("num-signals", job.num_signals.toLocaleString("en-US"));
  setText("attempts", String(job.attempts));
  setText("started", when(job.started_at));
  setText("ended", when(job.ended_at));
  setText("duration", duration(job.duration_seconds));
  showDataset(job.dataset_id);
  if (job.status === "failed") showFailure(job.error_message, job.errors);
}

/** One of the job's events (counted in `data-events`: what came over the stream). */
function apply(type, e) {
  if (!ACTIVE.has(root.dataset.status)) return; // ended: nothing moves any more
  const what = type.slice(prefix.length);
  root.dataset.events = `${root.dataset.events || ""} ${what}`.trim();
  if (what === "progressed") {
    showStatus(e.status || "running");
    showProgress(e.progress);
    if (e.attempts) setText("attempts", String(e.attempts));
    if (e.started_at) setText("started", when(e.started_at));
    root.dataset.stage = e.stage || "";
    return;
  }
  setText("ended", when(e.time));
  setText("duration", duration(e.duration_seconds));
  if (what === "completed") {
    showProgress(100);
    setText("num-signals", Number(e.num_signals).toLocaleString("en-US"));
    showDataset(e.dataset_id);
    showStatus("completed");
  } else if (what === "failed") {
    showFailure(e.error, e.errors);
    showStatus("failed");
  }
}

let reading = false;
async function read() {
  if (reading || !ACTIVE.has(root.dataset.status)) return;
  reading = true;
  try {
    const job = await getJson(url);
    if (ACTIVE.has(root.dataset.status)) show(job); // an end that came meanwhile stays
  } catch (e) { /* the next event, hello or tick tries again */ }
  reading = false;
}

live.addEventListener("any", (event) => {
  const { type, ...detail } = event.detail;
  if (type === "resync") { read(); return; }
  if (type.startsWith(prefix) && detail.job_id === root.dataset.job) apply(type, detail);
});
// what happened between the page's rendering (or a gap in the stream) and now
live.addEventListener("hello", read);
// without the stream: read now and then
setInterval(() => {
  if (document.hidden || document.body.dataset.liveConnected === "true") return;
  read();
}, FALLBACK_MS);
