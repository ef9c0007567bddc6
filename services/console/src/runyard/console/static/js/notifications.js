// The inbox follows the event stream: a new entry appears at the top, and entries read
// elsewhere (another tab, the API) lose their "Mark read" button, without a reload.
import { live } from "./app.js";

const list = document.getElementById("inbox");
const csrf = document.querySelector("meta[name=csrf-token]")?.content || "";

function markRead(item) {
  item.classList.remove("unread");
  const form = item.querySelector("form");
  if (!form) return;
  const mark = document.createElement("span");
  mark.className = "muted small read-mark";
  mark.textContent = "read";
  form.replaceWith(mark);
}

function readAllButton(count) {
  const button = document.getElementById("read-all");
  if (button && typeof count === "number") button.disabled = count === 0;
}

live.addEventListener("notification.created", (event) => {
  const d = event.detail;
  if (!list || list.querySelector(`[data-id="${CSS.escape(d.notification_id)}"]`)) return;
  document.getElementById("inbox-empty")?.remove();
  const item = document.createElement("li");
  item.className = "inbox-item unread";
  item.dataset.id = d.notification_id;
  const text = document.createElement("div");
  text.className = "inbox-text";
  const title = document.createElement("strong");
  title.className = "inbox-title";
  title.textContent = d.title;
  const tag = document.createElement("span");
  tag.className = "tag";
  tag.textContent = d.trigger_event_type;
  const when = document.createElement("span");
  when.className = "muted small";
  when.textContent = "just now";
  text.append(title, " ", tag, " ", when);
  const form = document.createElement("form");
  form.method = "post";
  form.className = "inline";
  const onlyUnread = list.dataset.unreadOnly === "true" ? "?unread_only=true" : "";
  form.action = `/notifications/${encodeURIComponent(d.notification_id)}/read${onlyUnread}`;
  const token = document.createElement("input");
  token.type = "hidden";
  token.name = "csrf_token";
  token.value = csrf;
  const button = document.createElement("button");
  button.type = "submit";
  button.className = "small";
  button.textContent = "Mark read";
  button.setAttribute("aria-label", `Mark read: ${d.title}`);
  form.append(token, button);
  item.append(text, form);
  list.prepend(item);
  const notice = document.getElementById("inbox-new");
  if (notice) notice.hidden = false;
  readAllButton(d.unread_count);
});

live.addEventListener("notification.read", (event) => {
  const d = event.detail;
  if (!list) return;
  const items = d.notification_id
    ? list.querySelectorAll(`[data-id="${CSS.escape(d.notification_id)}"]`)
    : list.querySelectorAll(".inbox-item.unread");
  items.forEach(markRead);
  readAllButton(d.unread_count);
});
