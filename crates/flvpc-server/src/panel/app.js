// Small progressive enhancements; every page works without this file.
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
});
document.addEventListener("DOMContentLoaded", () => {
  // Show times in the reader's own zone.
  for (const el of document.querySelectorAll("time[datetime]")) {
    const t = new Date(el.getAttribute("datetime"));
    if (!isNaN(t)) { el.title = el.textContent; el.textContent = t.toLocaleString(); }
  }
  // Click a <pre class="copy"> to copy it.
  for (const pre of document.querySelectorAll("pre.copy")) {
    pre.title = "Click to copy";
    pre.addEventListener("click", () => navigator.clipboard && navigator.clipboard.writeText(pre.textContent.trim()));
  }
});
// Live machine states and operation progress on a namespace page (Server-Sent Events).
document.addEventListener("DOMContentLoaded", () => {
  const section = document.querySelector("section#machines[data-namespace]");
  if (!section || !window.EventSource) return;
  const ns = section.dataset.namespace;
  const source = new EventSource("/api/v1/events");
  source.onmessage = (message) => {
    let event;
    try { event = JSON.parse(message.data); } catch { return; }
    if (event.namespace !== ns) return;
    if (event.type === "machine") {
      const row = section.querySelector(`tr[data-machine="${CSS.escape(event.name)}"]`);
      if (!row) { if (event.state !== "deleted") location.reload(); return; }
      if (event.state === "deleted") { row.remove(); return; }
      const cell = row.querySelector("[data-state]");
      if (cell) { cell.textContent = event.state; cell.className = "state " + event.state; }
      const ip = row.querySelector("[data-ip]");
      if (ip) ip.textContent = event.ip || "—";
    } else if (event.type === "operation") {
      const card = section.querySelector(`[data-operation="${CSS.escape(event.id)}"]`);
      if (card) {
        const pct = event.total > 0 ? Math.floor(event.done * 100 / event.total) : 100;
        card.querySelector("progress").value = pct;
        card.querySelector("[data-done]").textContent = event.done;
      }
      if (event.state === "succeeded" || event.state === "failed") setTimeout(() => location.reload(), 400);
    }
  };
});
// A machine's console page: the last lines again every 2 s, kept scrolled to the end unless
// the reader scrolled up. textContent only: the console is the tenant's text.
document.addEventListener("DOMContentLoaded", () => {
  const pre = document.querySelector("pre#console[data-console-url]");
  if (!pre || !window.fetch) return;
  const status = document.querySelector("#console-status");
  pre.scrollTop = pre.scrollHeight;
  const refresh = async () => {
    try {
      const answer = await fetch(pre.dataset.consoleUrl, { credentials: "same-origin" });
      const body = await answer.json();
      if (!answer.ok) { if (status) status.textContent = (body.error && body.error.message) || "The console cannot be read now."; return; }
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
      pre.textContent = body.text || "(nothing yet)";
      if (atEnd) pre.scrollTop = pre.scrollHeight;
      if (status) status.textContent = "Refreshed at " + new Date().toLocaleTimeString() + " (every 2 seconds).";
    } catch { if (status) status.textContent = "The console cannot be read now; retrying."; }
  };
  setInterval(refresh, 2000);
});
