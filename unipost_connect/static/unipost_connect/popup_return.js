/*
 * The last page of a UniPost Connect popup (template unipost_connect/popup_return.html).
 *
 * It tells the page that opened the popup which session came back, on two paths, because
 * Cross-Origin-Opener-Policy (this site's, or the hosted page's) may have cut the popup off
 * from its opener: window.opener.postMessage with this site's exact origin, and
 * BroadcastChannel("unipost-connect"), which reaches every page of this origin.
 * The message is {"source": "unipost-connect", "session_id", "status"}: no secret, and only
 * a hint; connect.js asks the JSON API for the truth.
 *
 * When a page acknowledges it ({"source": "unipost-connect", "type": "ack", "session_id"}),
 * the popup closes itself. When none does within a moment (no opener and no listener: the
 * flow ran in an ordinary window, or the opener went away), it goes on to the page a
 * full-page flow would have reached. A classic script, no dependency.
 */
(function () {
  "use strict";

  var SOURCE = "unipost-connect";
  // connect.js answers within milliseconds; this only bounds the wait when nobody listens.
  var ACK_WAIT_MS = 1500;

  var root = document.getElementById("unipost-connect-return");
  if (!root) {
    return;
  }
  var data = root.dataset;
  var report = { source: SOURCE, session_id: data.sessionId, status: data.status };
  var finished = false;
  var channel = null;
  var timer = null;

  function isAck(message) {
    return (
      message !== null &&
      typeof message === "object" &&
      message.source === SOURCE &&
      message.type === "ack" &&
      message.session_id === report.session_id
    );
  }

  function stop() {
    finished = true;
    if (timer !== null) {
      clearTimeout(timer);
    }
    if (channel !== null) {
      channel.close();
    }
    window.removeEventListener("message", onMessage);
  }

  function acknowledged() {
    if (finished) {
      return;
    }
    stop();
    // Shown only if the browser refuses to close the window.
    var working = root.querySelector(".unipost-popup-working");
    var done = root.querySelector(".unipost-popup-done");
    if (working && done) {
      working.hidden = true;
      done.hidden = false;
    }
    window.close();
  }

  function goOn() {
    if (finished) {
      return;
    }
    stop();
    window.location.replace(data.next);
  }

  function onMessage(event) {
    if (event.origin === window.location.origin && isAck(event.data)) {
      acknowledged();
    }
  }

  if (typeof BroadcastChannel === "function") {
    channel = new BroadcastChannel(SOURCE);
    channel.onmessage = function (event) {
      if (isAck(event.data)) {
        acknowledged();
      }
    };
  }
  window.addEventListener("message", onMessage);

  var opener = null;
  try {
    opener = window.opener;
  } catch (error) {
    opener = null;
  }
  // The page names the origin the server saw; posted only when it is this page's own, so
  // the target is always exactly this site's origin, never "*".
  if (opener && data.origin === window.location.origin) {
    try {
      opener.postMessage(report, data.origin);
    } catch (error) {
      // An opener that went away: the channel still carries the report.
    }
  }
  if (channel !== null) {
    channel.postMessage(report);
  }
  timer = setTimeout(goOn, ACK_WAIT_MS);
})();
