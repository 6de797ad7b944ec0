// TIE operations console: progressive enhancement only (every page works without this file).
// On the dashboard, re-fetch the page every N seconds and swap in the estate section.
"use strict";
(function () {
  var estate = document.getElementById("estate");
  if (!estate) { return; }
  var seconds = parseInt(estate.getAttribute("data-refresh") || "0", 10);
  if (!seconds) { return; }
  var hint = estate.querySelector(".meta-js");
  if (hint) { hint.hidden = false; }
  function refresh() {
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (text) {
        if (!text) { return; }
        var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("estate");
        var current = document.getElementById("estate");
        if (fresh && current && !current.contains(document.activeElement)) {
          current.replaceWith(document.importNode(fresh, true));
          var h = document.querySelector("#estate .meta-js");
          if (h) { h.hidden = false; }
        }
      })
      .catch(function () { /* keep the last good view; the next tick retries */ });
  }
  window.setInterval(refresh, seconds * 1000);
}());
