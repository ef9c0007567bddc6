// A model's page follows the registry's events: an alias set or removed, a version created or
// archived anywhere (another tab, the SDK, the CLI) redraws the aliases and versions here.
import { live } from "./app.js";

const root = document.getElementById("model");
const modelId = root?.dataset.model;
const TYPES = ["model_version.alias_set", "model_version.alias_removed",
  "model_version.created", "model_version.archived"];
let pending = null;

async function refresh(message) {
  // the model's own page (this one may be the answer to a refused POST)
  const url = `/models/${modelId}` + (root.dataset.archived === "true" ? "?archived=true" : "");
  const response = await fetch(url, {
    headers: { accept: "text/html" }, credentials: "same-origin",
  });
  if (!response.ok) return;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const id of ["alias-list", "version-list", "alias-version"]) {
    const now = document.getElementById(id);
    const next = fresh.getElementById(id);
    if (now && next && now.innerHTML !== next.innerHTML) now.innerHTML = next.innerHTML;
  }
  const note = document.getElementById("live-note");
  if (note && message) note.textContent = message;
  document.body.dataset.modelRefreshed = String(Number(document.body.dataset.modelRefreshed || 0) + 1);
}

function later(message) {
  clearTimeout(pending); // a burst of events: one read
  pending = setTimeout(() => refresh(message).catch(() => {}), 150);
}

if (modelId) {
  for (const type of TYPES) {
    live.addEventListener(type, (event) => {
      if (event.detail.model_id !== modelId) return;
      const d = event.detail;
      const message = type === "model_version.alias_set"
        ? `${d.alias} is now v${d.model_version}`
        : type === "model_version.alias_removed" ? `${d.alias} removed` : "";
      later(message);
    });
  }
  // events may have been missed while the stream was down
  live.addEventListener("hello", (event) => { if (event.detail.connections > 1) later(""); });
}
