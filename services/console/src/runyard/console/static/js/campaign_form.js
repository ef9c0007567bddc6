// The search-space form: "Add a parameter" clones the last row with fresh names and labels
// (the form works without it: the server renders enough blank rows).
const button = document.getElementById("add-param");
const tbody = document.querySelector("#search-space tbody");
if (button && tbody) {
  button.hidden = false;
  button.addEventListener("click", () => {
    const rows = tbody.querySelectorAll("tr[data-row]");
    if (rows.length >= 50) return;
    const last = rows[rows.length - 1];
    const index = rows.length;
    const copy = last.cloneNode(true);
    copy.dataset.row = String(index);
    copy.classList.remove("invalid");
    copy.querySelectorAll(".field-error").forEach((e) => e.remove());
    copy.querySelectorAll("input, select").forEach((control) => {
      const key = control.name.replace(/^p\d+_/, "");
      control.name = control.id = `p${index}_${key}`;
      control.removeAttribute("aria-invalid");
      control.removeAttribute("aria-describedby");
      const label = control.getAttribute("aria-label");
      if (label) control.setAttribute("aria-label", label.replace(/\d+$/, String(index + 1)));
      if (control.type === "checkbox") control.checked = false;
      else control.value = "";
    });
    tbody.appendChild(copy);
    copy.querySelector("input")?.focus();
  });
}
