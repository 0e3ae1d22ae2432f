// daqflow's own script (the Content-Security-Policy allows no inline script and no eval).
// - The message box empties itself when an action on the live section succeeded, or when
//   the server says so (the HX-Trigger "daqflow-clear-message" of an accepted action).
// - Clocks tick between polls, from the timestamps the server rendered (data-since: a
//   running time; data-until: a countdown; data-at: "checked 12 s ago").
// - When the server cannot be reached, the page says so within one poll period and greys
//   the live section instead of showing the last state as current.
(function () {
  "use strict";
  var lostAt = null;
  // How far this browser's clock is ahead of the server's, measured at each render, so that
  // a control-room PC with a wrong clock still counts times right.
  var skew = 0;

  function measureSkew() {
    var live = document.getElementById("live");
    var rendered = live && Date.parse(live.getAttribute("data-rendered-at"));
    if (rendered && !isNaN(rendered) && !live.classList.contains("stale")) {
      skew = Date.now() - rendered;
    }
  }

  function clearMessage() {
    var box = document.getElementById("message");
    if (box) { box.innerHTML = ""; }
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function hms(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var h = Math.floor(seconds / 3600), m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
    return h ? h + ":" + pad(m) + ":" + pad(s) : m + ":" + pad(s);
  }

  function clock(date) {
    return pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds());
  }

  function ago(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    return (seconds < 60 ? seconds + " s" : hms(seconds)) + " ago";
  }

  function tick() {
    document.querySelectorAll(".ticking[data-since]").forEach(function (element) {
      var since = Date.parse(element.getAttribute("data-since"));
      if (!isNaN(since)) { element.textContent = hms((Date.now() - skew - since) / 1000); }
    });
    document.querySelectorAll(".ticking[data-until]").forEach(function (element) {
      var until = Date.parse(element.getAttribute("data-until"));
      if (!isNaN(until)) { element.textContent = hms((until - Date.now() + skew) / 1000); }
    });
    document.querySelectorAll(".ago[data-at]").forEach(function (element) {
      var at = Date.parse(element.getAttribute("data-at"));
      if (!isNaN(at)) { element.textContent = ago((Date.now() - skew - at) / 1000); }
    });
  }

  function showLost(why) {
    var live = document.getElementById("live"), banner = document.getElementById("connection");
    if (!live || !banner) { return; }
    if (lostAt === null) { lostAt = new Date(); }
    var shown = Date.parse(live.getAttribute("data-rendered-at"));
    banner.textContent = why + " at " + clock(lostAt) + "; what is shown below is from " +
      (isNaN(shown) ? "earlier" : clock(new Date(shown))) + ", not the DAQ now";
    banner.hidden = false;
    live.classList.add("stale");
    followLegal();
  }

  function showFound() {
    var live = document.getElementById("live"), banner = document.getElementById("connection");
    lostAt = null;
    if (banner) { banner.hidden = true; banner.textContent = ""; }
    if (live) { live.classList.remove("stale"); }
    followLegal();
  }

  // Buttons follow what the rules allow now, as the live section last said (data-legal).
  function followLegal() {
    var live = document.getElementById("live");
    if (!live) { return; }
    var legal = (live.getAttribute("data-legal") || "").split(" ");
    document.querySelectorAll("button[data-action]").forEach(function (button) {
      button.disabled = live.classList.contains("stale") ||
        legal.indexOf(button.getAttribute("data-action")) < 0;
    });
  }

  // A new alarm plays a short sound (the Web Audio API: no file to fetch), once per browser,
  // unless this browser muted it (kept in localStorage).
  function beep() {
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) { return; }
    try {
      var context = new Context(), tone = context.createOscillator(), gain = context.createGain();
      tone.type = "square";
      tone.frequency.value = 880;
      gain.gain.value = 0.1;
      tone.connect(gain);
      gain.connect(context.destination);
      tone.start();
      tone.stop(context.currentTime + 0.4);
    } catch (error) { /* no sound device: the banner still shows */ }
  }

  function muted() { return window.localStorage.getItem("daqflow-alarm-mute") === "1"; }

  function followAlarms() {
    var banner = document.getElementById("alarm-banner");
    if (!banner) { return; }
    var newest = parseInt(banner.getAttribute("data-newest") || "0", 10);
    var heard = parseInt(window.localStorage.getItem("daqflow-alarm-heard") || "0", 10);
    if (newest > heard) {
      window.localStorage.setItem("daqflow-alarm-heard", String(newest));
      if (!muted()) { beep(); }
    }
    var mute = document.getElementById("alarm-mute");
    if (mute) { mute.textContent = muted() ? "unmute sound" : "mute sound"; }
  }

  document.addEventListener("click", function (event) {
    if (event.target && event.target.id === "alarm-mute") {
      window.localStorage.setItem("daqflow-alarm-mute", muted() ? "0" : "1");
      followAlarms();
    }
  });
  document.addEventListener("htmx:afterSettle", followAlarms);

  document.addEventListener("daqflow-clear-message", clearMessage);
  document.addEventListener("htmx:afterSettle", followLegal);
  document.addEventListener("htmx:afterSettle", measureSkew);
  document.addEventListener("DOMContentLoaded", measureSkew);
  document.addEventListener("htmx:afterRequest", function (event) {
    var target = event.detail && event.detail.target;
    if (!target || target.id !== "live") { return; }
    if (event.detail.successful) {
      clearMessage();
      showFound();
    } else if (event.detail.xhr && event.detail.xhr.status >= 500) {
      showLost("the web server answers, but " + (event.detail.xhr.status === 503 ?
        "the database does not" : "with an error (" + event.detail.xhr.status + ")"));
    }
  });
  document.addEventListener("htmx:sendError", function (event) {
    var target = event.detail && event.detail.target;
    if (target && target.id === "live") { showLost("connection lost"); }
  });
  setInterval(tick, 1000);
})();
