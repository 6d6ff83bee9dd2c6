// deployhook: a running run's page shows its command's output as it is produced.
// Polls <id>/live?after=N (same origin) every 0.4 s, appends the new text with
// textContent only, and reloads the page once when the run has ended.
(function () {
  "use strict";
  var out = document.getElementById("live-output");
  if (!out) { return; }
  var state = JSON.parse(out.getAttribute("data-live"));
  var step = document.getElementById("live-step");
  var after = state.after;
  var current = state.step;
  var PERIOD = 400;

  function show(answer) {
    if (answer.ended) { window.location.reload(); return false; }
    if (answer.step !== current || answer.reset) {
      current = answer.step;
      step.textContent = current || "waiting for output";
      out.textContent = "";
      if (!answer.reset) { after = 0; return true; }  // fetch the new step from its start
    }
    if (answer.output) {
      out.appendChild(document.createTextNode(answer.output));
    }
    after = answer.length;
    return true;
  }

  function poll() {
    fetch(state.url + "?after=" + after, {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (answer) { if (show(answer)) { setTimeout(poll, PERIOD); } })
      .catch(function () { setTimeout(poll, PERIOD * 5); });
  }
  setTimeout(poll, PERIOD);
}());
