// An endpoint's deliveries: the webhooks service publishes no event per delivery, so the page
// asks again every few seconds while it is visible (never while hidden, more slowly after a
// failed read) and redraws the list only when it changed.
import { getJson } from "./app.js";

const box = document.getElementById("deliveries");
const EVERY_MS = 4000;
const AFTER_FAILURE_MS = 30000;
let timer = null;

async function check() {
  timer = null;
  let wait = EVERY_MS;
  try {
    const found = await getJson(box.dataset.url);
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
    wait = AFTER_FAILURE_MS;
  }
  schedule(wait);
}

function schedule(wait) {
  if (timer === null && document.visibilityState === "visible") timer = setTimeout(check, wait);
}

if (box) {
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") schedule(0);
    else if (timer !== null) { clearTimeout(timer); timer = null; }
  });
  schedule(EVERY_MS);
}
