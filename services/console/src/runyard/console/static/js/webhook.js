// An endpoint's deliveries: the webhooks service announces its attempts once per endpoint and
// short window (`webhook.deliveries_updated`); on it the page reads the list again and redraws
// it when it changed. It also reads after a gap in its live stream (hello, resync) and, while
// the stream is down, every few seconds when visible (more slowly after a failed read).
import { live, getJson } from "./app.js";

const box = document.getElementById("deliveries");
const FALLBACK_MS = 4000;
const AFTER_FAILURE_MS = 30000;
let reading = null;
let again = false;
let failedAt = 0;

async function check() {
  try {
    const found = await getJson(box.dataset.url);
    failedAt = 0;
    if (found.fingerprint !== box.dataset.fingerprint) {
      const open = new Set([...box.querySelectorAll("details[open]")]
        .map((d) => d.closest("[data-delivery]")?.dataset.delivery));
      box.innerHTML = found.html;
      box.dataset.fingerprint = found.fingerprint;
      for (const id of open) {
        if (id) box.querySelector(`[data-delivery="${CSS.escape(id)}"] details`)?.setAttribute("open", "");
      }
    }
  } catch (e) {
    failedAt = Date.now();
  }
}

/** One read at a time; news that comes during a read makes one more after it. */
async function refresh() {
  if (reading) { again = true; return; }
  reading = check();
  await reading;
  reading = null;
  if (again) { again = false; refresh(); }
}

if (box) {
  live.addEventListener("any", (event) => {
    const { type, webhook_id: id } = event.detail;
    if (type === "resync") refresh();
    else if (type === "webhook.deliveries_updated" && id === box.dataset.webhook) {
      box.dataset.events = String(Number(box.dataset.events || 0) + 1);
      refresh();
    }
  });
  live.addEventListener("hello", () => refresh());
  setInterval(() => {
    if (document.visibilityState !== "visible" || document.body.dataset.liveConnected === "true") return;
    if (failedAt && Date.now() - failedAt < AFTER_FAILURE_MS) return;
    refresh();
  }, FALLBACK_MS);
}
