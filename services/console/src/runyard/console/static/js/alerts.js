// Alerts: new alerts arrive live (`alert.triggered`, `alert.resolved`) at the top of the alerts
// list and of an experiment page's alerts panel (the same rows the server renders, built here
// with textContent only); the rule form shows only the fields of the chosen kind and scope.
import { live } from "./app.js";

function fmt(v) {
  if (typeof v !== "number") return String(v);
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return v.toLocaleString("en");
  if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e6)) return v.toExponential(3);
  return Number(v.toPrecision(4)).toString();
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

/** The row the server's `_alerts.html` renders, from an event. */
export function alertRow(d, status, withExperiment) {
  const when = (d.time || new Date().toISOString());
  const row = el("tr", { "data-alert": d.alert_id, "data-status": status, class: `alert-row sev-${d.severity} new` });
  row.append(el("td", {}, el("time", { datetime: when, text: when.slice(0, 16).replace("T", " ") })));
  row.append(el("td", {}, el("span", { class: `status ${status === "triggered" ? "s-failed" : "s-completed"}`, text: status })));
  row.append(el("td", {}, el("span", { class: `severity sev-${d.severity}`, text: d.severity })));
  const rule = el("td", {}, el("a", { href: `/alerts?rule_id=${encodeURIComponent(d.rule_id)}`, text: d.rule_name }));
  rule.append(" ", el("span", { class: "muted small", text: d.kind }));
  row.append(rule);
  if (withExperiment) {
    row.append(el("td", {}, el("a", { href: `/experiments/${encodeURIComponent(d.experiment_id)}`, text: d.name })));
  }
  row.append(el("td", { class: "num", text: d.epoch === null || d.epoch === undefined ? "—" : String(d.epoch) }));
  const values = el("span", { class: "muted small" });
  Object.entries(d.values || {}).forEach(([k, v], i) => {
    if (i) values.append(", ");
    values.append(el("span", { class: "alert-value" }, el("code", { text: k }), `=${fmt(v)}`));
  });
  row.append(el("td", { class: "wrap" }, el("span", { class: "summary", text: d.summary }), el("br"), values));
  return row;
}

/** A table of alerts that takes the events it matches, newest on top. */
function follow(table, { experiment = "", rule = "", status = "", withExperiment = true, max = 0 }) {
  const body = table.tBodies[0];
  const take = (d, type) => {
    if (experiment && d.experiment_id !== experiment) return;
    if (rule && d.rule_id !== rule) return;
    if (status && status !== type) return;
    if (body.querySelector(`tr[data-alert="${CSS.escape(d.alert_id)}"]`)) return;
    body.querySelectorAll("tr.empty-row").forEach((r) => r.remove());
    body.prepend(alertRow(d, type, withExperiment));
    if (max) while (body.rows.length > max) body.deleteRow(body.rows.length - 1);
    table.dataset.events = String(Number(table.dataset.events || 0) + 1);
    table.closest("section")?.removeAttribute("hidden");
    const count = document.getElementById("alerts-count");
    if (count && type === "triggered") count.textContent = String(Number(count.textContent || 0) + 1);
  };
  live.addEventListener("alert.triggered", (e) => take(e.detail, "triggered"));
  live.addEventListener("alert.resolved", (e) => take(e.detail, "resolved"));
}

const list = document.getElementById("alerts");
if (list) {
  follow(list, { experiment: list.dataset.experiment, rule: list.dataset.rule, status: list.dataset.status });
}
const panel = document.getElementById("experiment-alerts");
if (panel) {
  follow(panel, { experiment: panel.dataset.experiment, withExperiment: false, max: 20 });
}

// the rule form: the chosen kind's fields, the chosen scope's field
const form = document.getElementById("rule-form");
if (form) {
  const kind = form.elements.namedItem("kind");
  const scope = form.elements.namedItem("scope_type");
  const show = () => {
    for (const node of form.querySelectorAll("[data-kinds]")) {
      node.hidden = !node.dataset.kinds.split(" ").includes(kind.value);
    }
    for (const node of form.querySelectorAll("[data-scopes]")) {
      node.hidden = node.dataset.scopes !== scope.value;
    }
  };
  kind.addEventListener("change", show);
  scope.addEventListener("change", show);
  show();
}
