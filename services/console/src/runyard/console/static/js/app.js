// Shared by every page: theme toggle, the live event stream, the unread badge, session expiry.
export const live = new EventTarget();

const LIVE_TYPES = [
  "experiment.epochs_logged", "experiment.created", "experiment.updated", "experiment.deleted",
  "experiment.started", "experiment.paused", "experiment.resumed", "experiment.completed",
  "experiment.failed", "experiment.cancelled", "resync",
];
const NOTIFYING = new Set(["experiment.completed", "experiment.failed", "experiment.cancelled"]);

export function currentTheme() {
  const set = document.documentElement.dataset.theme;
  if (set) return set;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

document.getElementById("theme-toggle")?.addEventListener("click", () => {
  const next = currentTheme() === "dark" ? "light" : "dark";
  document.documentElement.dataset.theme = next;
  try { localStorage.setItem("runyard-theme", next); } catch (e) { /* not kept */ }
  document.dispatchEvent(new CustomEvent("runyard:theme"));
});

/** fetch() for the console's JSON reads; an ended session goes to sign-in and back here. */
export async function getJson(url) {
  const response = await fetch(url, {
    headers: { accept: "application/json", "x-console-page": location.pathname + location.search },
    credentials: "same-origin",
  });
  if (response.status === 401) {
    const body = await response.json().catch(() => ({}));
    location.href = body.login || "/login?next=" + encodeURIComponent(location.pathname + location.search);
    throw new Error("signed out");
  }
  if (!response.ok) throw new Error("HTTP " + response.status);
  return response.json();
}

async function refreshUnread() {
  const badge = document.getElementById("unread");
  if (!badge) return;
  try {
    const body = await getJson("/console-api/unread-count");
    if (typeof body.unread_count === "number") {
      badge.textContent = String(body.unread_count);
      badge.classList.toggle("zero", body.unread_count === 0);
    }
  } catch (e) { /* the next event tries again */ }
}

function connect() {
  const indicator = document.getElementById("live-state");
  const source = new EventSource("/events");
  source.addEventListener("hello", () => {
    indicator?.classList.add("on");
    document.body.dataset.liveConnected = "true";
  });
  for (const type of LIVE_TYPES) {
    source.addEventListener(type, (message) => {
      const detail = JSON.parse(message.data || "{}");
      live.dispatchEvent(new CustomEvent(type, { detail }));
      live.dispatchEvent(new CustomEvent("any", { detail: { type, ...detail } }));
      if (NOTIFYING.has(type)) {
        setTimeout(refreshUnread, 1500);
        setTimeout(refreshUnread, 5000);
      }
    });
  }
  source.onerror = async () => {
    indicator?.classList.remove("on");
    document.body.dataset.liveConnected = "false";
    try {
      await getJson("/console-api/unread-count"); // a 401 sends the browser to sign in
    } catch (e) { /* the stream reconnects by itself */ }
  };
}

if (document.body.dataset.live === "on") connect();
