// The instance's terminal: xterm.js (vendored) over the console's websocket
// (/instances/NAME/terminal/ws, relayed to the agent's console: see web/terminal.py).
// Keystrokes go as binary frames, the output comes back as binary frames, a resize of the
// terminal as {"type": "resize"}; {"type": "exit", "code": N} or {"type": "error"} ends it,
// shown in #terminal-status (its data-state: connecting, open, exited, refused, closed).
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var el = document.getElementById("terminal");
    var status = document.getElementById("terminal-status");
    if (!el || !window.Terminal) { return; }
    function say(state, text) { status.dataset.state = state; status.textContent = text; }
    var term = new window.Terminal({cursorBlink: true, convertEol: false, scrollback: 2000});
    var fit = new window.FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(el);
    fit.fit();
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var url = scheme + location.host + el.dataset.src + "?cols=" + term.cols + "&rows=" + term.rows;
    var ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    var encoder = new TextEncoder();
    var ended = false;
    ws.onopen = function () { say("open", "Connected."); term.focus(); };
    ws.onmessage = function (evt) {
      if (typeof evt.data !== "string") { term.write(new Uint8Array(evt.data)); return; }
      var msg;
      try { msg = JSON.parse(evt.data); } catch (e) { return; }
      if (msg.type === "exit") {
        ended = true;
        say("exited", "The shell exited with code " + msg.code + ".");
      } else if (msg.type === "error") {
        ended = true;
        say("refused", "Refused (" + msg.status + "): " + (msg.error && msg.error.message));
      }
    };
    ws.onclose = function (evt) {
      if (!ended) { say("closed", "The connection closed (" + evt.code + (evt.reason ? ": " + evt.reason : "") + ")."); }
    };
    term.onData(function (data) {
      if (ws.readyState === WebSocket.OPEN) { ws.send(encoder.encode(data)); }
    });
    term.onResize(function (size) {
      if (ws.readyState === WebSocket.OPEN) {
        ws.send(JSON.stringify({type: "resize", cols: size.cols, rows: size.rows}));
      }
    });
    window.addEventListener("resize", function () { fit.fit(); });
  });
})();
