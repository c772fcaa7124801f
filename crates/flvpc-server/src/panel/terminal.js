// The browser terminal: xterm.js (embedded from the npm package) wired to the terminal's
// WebSocket. Binary frames are terminal bytes both ways; the one text message we send is the
// terminal's size, {"type":"resize","cols":N,"rows":M}, whenever it fits itself to its box.
"use strict";

// The panel's Content-Security-Policy forbids inline <style> elements, which xterm.js makes for
// its theme and cell sizes. Their text is copied into constructed stylesheets instead, which the
// policy allows (they are built by this script, from the library's own rules).
(() => {
  const sheets = new Map();
  const mirror = (style) => {
    let sheet = sheets.get(style);
    if (!sheet) {
      sheet = new CSSStyleSheet();
      sheets.set(style, sheet);
      document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
    }
    try { sheet.replaceSync(style.textContent || ""); } catch (_) { /* a rule the browser rejects */ }
  };
  const scan = () => document.querySelectorAll("style").forEach(mirror);
  new MutationObserver(scan).observe(document.documentElement, { subtree: true, childList: true, characterData: true });
})();

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("terminal");
  const status = document.getElementById("terminal-status");
  if (!box || typeof Terminal === "undefined") return;
  const term = new Terminal({ cursorBlink: true, scrollback: 5000, fontSize: 14,
    fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', monospace" });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(box);
  fit.fit();
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(scheme + "//" + location.host + box.dataset.socket);
  socket.binaryType = "arraybuffer";
  const encoder = new TextEncoder();
  const open = () => socket.readyState === WebSocket.OPEN;
  const sendSize = () => {
    if (open()) socket.send(JSON.stringify({ type: "resize", cols: term.cols, rows: term.rows }));
  };
  socket.addEventListener("open", () => {
    status.textContent = "Connected.";
    sendSize();
    term.focus();
  });
  socket.addEventListener("message", (event) => {
    if (event.data instanceof ArrayBuffer) term.write(new Uint8Array(event.data));
  });
  socket.addEventListener("close", (event) => {
    const why = event.reason || (event.code === 1006 ? "the connection to the server was lost" : "the terminal closed");
    status.textContent = "Disconnected: " + why + ".";
    status.classList.add("flash", "error");
    status.setAttribute("role", "alert");
    box.dataset.closed = "true";
    term.options.disableStdin = true;
  });
  term.onData((text) => { if (open()) socket.send(encoder.encode(text)); });
  term.onBinary((text) => {
    if (!open()) return;
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i) & 0xff;
    socket.send(bytes);
  });
  term.onResize(sendSize);
  window.addEventListener("resize", () => fit.fit());
  // Closing the page closes the terminal at once, not when the server notices.
  window.addEventListener("pagehide", () => socket.close(1000, "page closed"));
});
