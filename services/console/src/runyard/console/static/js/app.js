// Shared by every page: theme toggle, the live event stream, the unread badge, session expiry.
export const live = new EventTarget();

const LIVE_TYPES = [
  "experiment.epochs_logged", "experiment.created", "experiment.updated", "experiment.deleted",
  "experiment.started", "experiment.paused", "experiment.resumed", "experiment.completed",
  "experiment.failed", "experiment.cancelled", "experiment.stalled",
  "notification.created", "notification.read",
  "dataset_generation.progressed", "dataset_generation.completed", "dataset_generation.failed",
  "dataset_import.progressed", "dataset_import.completed", "dataset_import.failed",
  "nas_trial.completed", "nas_campaign.completed", "webhook.deliveries_updated",
  "model_version.created", "model_version.alias_set", "model_version.alias_removed",
  "model_version.archived",
  "alert.triggered", "alert.resolved",
  "resync",
];
/** Inbox events carry the user's unread count: the badge shows it as it comes. */
const INBOX = new Set(["notification.created", "notification.read"]);

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

function showUnread(count) {
  const badge = document.getElementById("unread");
  if (!badge || typeof count !== "number") return;
  badge.textContent = String(count);
  badge.classList.toggle("zero", count === 0);
}

/** Read the count once: after the stream was lost (events may have been missed meanwhile). */
async function refreshUnread() {
  try {
    showUnread((await getJson("/console-api/unread-count")).unread_count);
  } catch (e) { /* the next event brings it */ }
}

function connect() {
  const indicator = document.getElementById("live-state");
  const source = new EventSource("/events");
  let connections = 0;
  source.addEventListener("hello", () => {
    indicator?.classList.add("on");
    document.body.dataset.liveConnected = "true";
    connections += 1;
    if (connections > 1) refreshUnread(); // the page's own count is from before the gap
    // pages whose state may have moved since their rendering (or during the gap) read once
    live.dispatchEvent(new CustomEvent("hello", { detail: { connections } }));
  });
  for (const type of LIVE_TYPES) {
    source.addEventListener(type, (message) => {
      const detail = JSON.parse(message.data || "{}");
      if (INBOX.has(type)) showUnread(detail.unread_count);
      if (type === "resync") refreshUnread();
      live.dispatchEvent(new CustomEvent(type, { detail }));
      live.dispatchEvent(new CustomEvent("any", { detail: { type, ...detail } }));
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

if (document.body.dataset.live === "on") {
  // once the page's own reads are in (a preloaded history delays "load"): the stream's session
  // check then does not compete with them
  if (document.readyState === "complete") connect();
  else addEventListener("load", connect, { once: true });
}
