// Live pages: each element with data-live is refreshed from that URL (an HTML fragment)
// every data-every seconds. A static file, so the Content-Security-Policy can forbid
// inline scripts. Paused while the tab is hidden or a form field inside has the focus.
"use strict";
(function () {
  function refresh(el) {
    var every = Math.max(0.5, Number(el.dataset.every) || 2) * 1000;
    function tick() {
      var busy = el.contains(document.activeElement) && document.activeElement !== document.body;
      if (document.hidden || busy) {
        window.setTimeout(tick, every);
        return;
      }
      fetch(el.dataset.live, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) {
          if (response.ok) {
            return response.text().then(function (html) {
              el.innerHTML = html;
              el.dataset.refreshed = String(Number(el.dataset.refreshed || 0) + 1);
            });
          }
        })
        .catch(function () {})
        .then(function () {
          window.setTimeout(tick, every);
        });
    }
    window.setTimeout(tick, every);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(refresh);
  });
})();
