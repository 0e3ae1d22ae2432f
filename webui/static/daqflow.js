// daqflow's own script (the Content-Security-Policy allows no inline script and no eval).
// The message box empties itself when an action on the live section succeeded, or when the
// server says so (the HX-Trigger "daqflow-clear-message" of an accepted action).
(function () {
  "use strict";
  function clearMessage() {
    var box = document.getElementById("message");
    if (box) { box.innerHTML = ""; }
  }
  document.addEventListener("daqflow-clear-message", clearMessage);
  document.addEventListener("htmx:afterRequest", function (event) {
    var target = event.detail && event.detail.target;
    if (event.detail.successful && target && target.id === "live") { clearMessage(); }
  });
})();
