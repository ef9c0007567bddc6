// Applies the chosen theme before the page paints (a classic script in <head>, no inline code).
(function () {
  try {
    var chosen = localStorage.getItem("runyard-theme");
    if (chosen === "dark" || chosen === "light") document.documentElement.dataset.theme = chosen;
  } catch (e) { /* storage off: the system's preference applies */ }
})();
