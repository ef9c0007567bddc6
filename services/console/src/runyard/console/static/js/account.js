// The links of account emails (choose a new password, verify an address) carry their token in
// the URL fragment (#token=...), which browsers never send to a server, so it stays out of
// access logs and Referer headers. This module moves it into the page's form and removes it
// from the address bar and the history; the form then posts it to the console (with its CSRF
// token). A form marked data-link-token="submit" is sent at once.
const form = document.querySelector("form[data-link-token]");

function takeToken() {
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  const field = form.elements.namedItem("token");
  if (!token || !field) return;
  field.value = token;
  form.querySelector("[data-token-entry]")?.setAttribute("hidden", "");
  form.dataset.tokenRead = "true";
  if (form.dataset.linkToken === "submit") form.requestSubmit();
  else form.querySelector("input[type=password]")?.focus();
}

if (form) {
  takeToken();
  window.addEventListener("hashchange", takeToken); // a second link opened in this tab
}
