// The import form: the upload goes by XMLHttpRequest so that its progress shows (fetch has no
// upload progress); the console hands it to the API and answers with the job's page, where the
// browser goes, or with the errors by field. Without scripts the form posts as it is.
const form = document.getElementById("import-form");
const bar = document.getElementById("upload-progress");
const state = document.getElementById("upload-state");
const box = document.getElementById("upload-errors");

function clearErrors() {
  form.querySelectorAll(".field-error.live").forEach((e) => e.remove());
  form.querySelectorAll("[aria-invalid]").forEach((e) => {
    e.removeAttribute("aria-invalid");
    e.removeAttribute("aria-describedby");
  });
  box.hidden = true;
  box.textContent = "";
}

function showErrors(errors) {
  const rest = [];
  for (const [field, messages] of Object.entries(errors)) {
    const control = field ? document.getElementById(`f-${field}`) : null;
    if (!control) { rest.push((field ? field + ": " : "") + messages.join("; ")); continue; }
    const note = document.createElement("span");
    note.className = "field-error live";
    note.id = `f-${field}-error`;
    note.textContent = messages.join("; ");
    control.after(note);
    control.setAttribute("aria-invalid", "true");
    control.setAttribute("aria-describedby", note.id);
  }
  box.textContent = "The upload was not accepted. " + (rest.length ? rest.join(" · ") : "See the marked fields.");
  box.hidden = false;
  form.querySelector("[aria-invalid]")?.focus();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  clearErrors();
  const button = document.getElementById("start-import");
  button.disabled = true;
  bar.hidden = false;
  bar.value = 0;
  state.textContent = "uploading…";
  const request = new XMLHttpRequest();
  request.open("POST", form.action);
  request.setRequestHeader("accept", "application/json");
  request.responseType = "json";
  request.upload.addEventListener("progress", (e) => {
    if (!e.lengthComputable) return;
    const percent = Math.round((100 * e.loaded) / e.total);
    bar.value = percent;
    state.textContent = `${percent}% uploaded`;
    form.dataset.uploaded = String(percent);
  });
  request.addEventListener("load", () => {
    const body = request.response || {};
    if (request.status === 202 && body.location) {
      state.textContent = "uploaded: opening the job";
      location.href = body.location;
      return;
    }
    if (request.status === 401 && body.login) { location.href = body.login; return; }
    button.disabled = false;
    state.textContent = "";
    bar.hidden = true;
    showErrors(body.errors || { "": [body.detail || body.title || `HTTP ${request.status}`] });
  });
  request.addEventListener("error", () => {
    button.disabled = false;
    state.textContent = "the upload broke off: try again";
  });
  request.send(new FormData(form));
});
