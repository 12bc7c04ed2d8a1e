// Live progress of a replay: poll its JSON every second until it is no longer running.
(function () {
  "use strict";
  var box = document.getElementById("progress");
  if (!box) { return; }
  var fields = ["state", "error", "scanned", "total", "sent", "parked", "superseded",
    "already_parked", "replay_topic_committed", "replay_topic_end", "replay_topic_lag"];
  function show(p) {
    fields.forEach(function (name) {
      var el = document.getElementById(name);
      var value = p[name];
      if (el) { el.textContent = value === null || value === undefined ? (name === "error" ? "" : "-") : String(value); }
    });
    var bar = document.getElementById("bar");
    bar.max = p.total || 1;
    bar.value = p.scanned;
    var stop = document.getElementById("stop");
    if (stop && p.state !== "running") { stop.form.hidden = true; }
  }
  function poll() {
    fetch(box.dataset.url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (p) {
        show(p);
        // After the run, keep watching until the group has consumed what was sent.
        if (p.state === "running" || (p.state === "done" && !p.settled)) {
          setTimeout(poll, 1000);
        }
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  poll();
}());
