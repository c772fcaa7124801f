// The state as a person reads it: a microVM that is "creating" is booting its guest (the same
// rule as core::view::state_word on the server).
function stateWord(state, element) {
  return state === "creating" && element.dataset.engine === "microvm" ? "booting" : state;
}
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
  // Copy buttons: shown once the script can copy; the result is said in a live region.
  const canCopy = !!(navigator.clipboard || document.queryCommandSupported?.("copy"));
  for (const button of document.querySelectorAll(".copyable button.copy")) {
    if (!canCopy) continue;
    button.hidden = false;
    const box = button.closest(".copyable");
    const pre = box.querySelector("pre.copy");
    const said = box.querySelector(".copied");
    button.setAttribute("aria-label", "Copy " + (pre.title || "the text above"));
    button.addEventListener("click", async () => {
      const text = pre.textContent.trim();
      let done = false;
      try { await navigator.clipboard.writeText(text); done = true; } catch {
        // Without clipboard permission (an insecure origin, an unfocused page): copy the selection.
        const range = document.createRange(); range.selectNodeContents(pre);
        const selection = getSelection(); selection.removeAllRanges(); selection.addRange(range);
        try { done = document.execCommand("copy"); } catch { done = false; }
      }
      said.textContent = "";
      said.textContent = done ? "Copied" : "Copy failed: select the text and press Ctrl+C";
      button.textContent = done ? "Copied" : "Copy";
      setTimeout(() => { button.textContent = "Copy"; said.textContent = ""; }, 3000);
    });
  }
  // A refused form: bring its message into view and put the cursor where the fix goes.
  const refusal = document.getElementById("form-error");
  if (refusal) {
    const form = refusal.closest("form");
    // The field the message names ("public_key: …"), else the form's first field.
    const named = refusal.textContent.split(":")[0].trim();
    const fields = form ? [...form.querySelectorAll("input:not([type=hidden]), textarea, select")] : [];
    const field = fields.find((f) => f.name === named) || fields[0];
    if (field) {
      field.setAttribute("aria-invalid", "true");
      field.setAttribute("aria-describedby", "form-error");
      field.focus({ preventScroll: true });
    }
    refusal.scrollIntoView({ block: "center" });
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
      if (cell) { cell.textContent = stateWord(event.state, cell); cell.className = "state " + event.state; }
      const ip = row.querySelector("[data-ip]");
      if (ip) ip.textContent = event.ip || "—";
      // SSH commands only while the machine runs.
      const ssh = row.querySelector("[data-ssh]"), off = row.querySelector("[data-ssh-off]");
      if (ssh && off) { ssh.hidden = event.state !== "running"; off.hidden = !ssh.hidden; }
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
// A machine's own page (panel/machine.rs): its state, address, error and SSH commands, and
// the state of its operations, follow the event stream without a reload. textContent only.
document.addEventListener("DOMContentLoaded", () => {
  const section = document.querySelector("section#machine[data-namespace][data-machine]");
  if (!section || !window.EventSource) return;
  const { namespace: ns, machine: name } = section.dataset;
  const source = new EventSource("/api/v1/events");
  source.onmessage = (message) => {
    let event;
    try { event = JSON.parse(message.data); } catch { return; }
    if (event.namespace !== ns) return;
    if (event.type === "machine" && event.name === name) {
      if (event.state === "deleted") { location.assign("/namespaces/" + encodeURIComponent(ns) + "#machines"); return; }
      const badge = section.querySelector("[data-state]");
      if (badge) { badge.textContent = stateWord(event.state, badge); badge.className = "state " + event.state; }
      const text = section.querySelector("[data-state-text]");
      if (text) text.textContent = stateWord(event.state, text);
      const ip = section.querySelector("[data-ip]");
      if (ip) ip.textContent = event.ip || "—";
      const box = section.querySelector("[data-error]"), said = section.querySelector("[data-error-text]");
      if (box && said) { said.textContent = event.error || ""; box.hidden = !event.error; }
      // How long it has been up is only known from the server's record: say so rather than guess.
      const up = section.querySelector("[data-uptime]");
      if (up && event.state !== "running") up.textContent = "—";
      else if (up && up.textContent.trim() === "—") up.textContent = "just started";
      const ssh = section.querySelector("[data-ssh]"), off = section.querySelector("[data-ssh-off]");
      if (ssh && off) { ssh.hidden = event.state !== "running"; off.hidden = !ssh.hidden; }
    } else if (event.type === "operation") {
      const cell = section.querySelector(`tr[data-operation-row="${CSS.escape(event.id)}"] [data-op-state]`);
      if (cell) {
        cell.textContent = event.state;
        cell.className = "outcome " + (event.state === "succeeded" ? "ok" : event.state === "failed" ? "bad" : "open");
      }
    }
  };
});
// ---- Layout and navigation (issue 11). ----
document.addEventListener("DOMContentLoaded", () => {
  // The menu folds behind a button on a narrow screen (the CSS shows the button only there).
  const header = document.querySelector("header.top");
  const toggle = header && header.querySelector(".menu-toggle");
  if (toggle) {
    header.classList.add("folded");
    toggle.hidden = false;
    const set = (open) => { header.classList.toggle("folded", !open); toggle.setAttribute("aria-expanded", String(open)); };
    toggle.addEventListener("click", () => set(header.classList.contains("folded")));
    header.addEventListener("keydown", (e) => { if (e.key === "Escape" && !header.classList.contains("folded")) { set(false); toggle.focus(); } });
  }
  // Each cell knows its column's name, which a table shown as cards on a phone prints above it.
  for (const table of document.querySelectorAll("table")) {
    const names = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
    for (const row of table.querySelectorAll("tbody tr")) {
      [...row.children].forEach((cell, i) => { if (names[i] && !cell.hasAttribute("data-label")) cell.dataset.label = names[i]; });
    }
  }
  // The namespace page's tabs: the tab of the section in view is marked current.
  const tabs = [...document.querySelectorAll("nav.tabs a[data-tab]")];
  if (tabs.length) {
    const sections = tabs.map((a) => document.getElementById(a.dataset.tab)).filter(Boolean);
    const mark = (id) => { for (const a of tabs) { if (a.dataset.tab === id) a.setAttribute("aria-current", "true"); else a.removeAttribute("aria-current"); } };
    const inView = () => {
      let current = sections[0];
      for (const s of sections) if (s.getBoundingClientRect().top <= 90) current = s;
      // At the bottom of the page the last section is the one read, however short.
      if (window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 2) current = sections[sections.length - 1];
      if (current) mark(current.id);
    };
    let pending = false;
    window.addEventListener("scroll", () => { if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; inView(); }); } }, { passive: true });
    window.addEventListener("hashchange", () => { const id = location.hash.slice(1); if (tabs.some((a) => a.dataset.tab === id)) mark(id); });
    for (const a of tabs) a.addEventListener("click", () => setTimeout(() => mark(a.dataset.tab), 50));
    const hash = location.hash.slice(1);
    if (tabs.some((a) => a.dataset.tab === hash)) mark(hash); else inView();
  }
});
// The machines table's "select every machine" box ticks or clears every row's box.
document.addEventListener("DOMContentLoaded", () => {
  const all = document.querySelector("input[data-select-all]");
  if (!all) return;
  const rows = () => document.querySelectorAll("input[type=checkbox][name=machine][form=selected-machines]");
  all.addEventListener("change", () => { for (const box of rows()) box.checked = all.checked; });
});
// A refused cluster spec: select the line its message is about in the editor and say its
// number — "line N" of a YAML syntax error, else the line of a path such as
// machines[1].spec.ignite.memory (the second item's `memory:` key).
document.addEventListener("DOMContentLoaded", () => {
  const refusal = document.getElementById("form-error");
  const editor = refusal && refusal.closest("form") && refusal.closest("form").querySelector("textarea[name=spec]");
  if (!editor) return;
  const lines = editor.value.split("\n");
  const message = refusal.textContent;
  let index = -1;
  const syntax = message.match(/line (\d+)/);
  if (syntax) {
    index = Number(syntax[1]) - 1;
  } else {
    const path = message.match(/^machines\[(\d+)\]((?:\.[A-Za-z]+)*)/);
    if (path) {
      const item = Number(path[1]);
      const key = (path[2].split(".").pop() || "").trim();
      const starts = lines.map((l, i) => (/^\s*- /.test(l) && !/^\s{4,}- /.test(l) ? i : -1)).filter((i) => i >= 0);
      const from = starts[item];
      if (from !== undefined) {
        const to = starts[item + 1] === undefined ? lines.length : starts[item + 1];
        index = from;
        for (let i = from; i < to && key; i++) {
          if (new RegExp("(^|[\\s{,-])" + key + "\\s*:").test(lines[i])) { index = i; break; }
        }
      }
    }
  }
  if (index < 0 || index >= lines.length) return;
  const start = lines.slice(0, index).reduce((n, l) => n + l.length + 1, 0);
  editor.focus({ preventScroll: true });
  editor.setSelectionRange(start, start + lines[index].length);
  const note = document.createElement("span");
  note.className = "error-line";
  note.textContent = " (line " + (index + 1) + ", selected in the editor)";
  refusal.appendChild(note);
});
// A machine's page redraws its graphs every 30 s with the sampler's newest points (the
// server draws them; this only swaps the fragment in).
document.addEventListener("DOMContentLoaded", () => {
  const section = document.querySelector("section#machine[data-namespace][data-machine]");
  if (!section || !window.fetch) return;
  setInterval(async () => {
    try {
      const answer = await fetch(location.pathname.replace(/\/$/, "") + "/charts", { credentials: "same-origin" });
      const charts = section.querySelector("div.charts");
      if (answer.ok && charts) charts.outerHTML = await answer.text();
    } catch { /* the next round tries again */ }
  }, 30000);
});
// The quick form and the YAML stay one editor: what is typed in the quick form is shown at once
// as the YAML it saves (values as JSON strings, which YAML reads as they are, never as syntax).
document.addEventListener("DOMContentLoaded", () => {
  const quick = document.querySelector("form[data-sync-yaml]");
  const editor = document.querySelector("textarea[name=spec]");
  if (!quick || !editor) return;
  const value = (name) => (quick.elements[name] ? quick.elements[name].value.trim() : "");
  const number = (name) => (/^\d+$/.test(value(name)) ? value(name) : JSON.stringify(value(name)));
  quick.addEventListener("input", () => {
    const port = value("ssh_port");
    editor.value = [
      "machines:",
      "- count: " + number("count"),
      "  spec:",
      "    name: " + JSON.stringify(value("name")),
      "    image: " + JSON.stringify(value("image")),
      "    backend: " + JSON.stringify(value("backend") || "docker"),
      "    portMappings:",
      "    - containerPort: 22",
      ...(/^\d+$/.test(port) && port !== "0" ? ["      hostPort: " + port] : []),
      "    ignite:",
      "      cpus: " + number("cpus"),
      "      memory: " + JSON.stringify(value("memory_mb") + "MB"),
      "      diskSize: " + JSON.stringify(value("disk_gb") + "GB"),
      "",
    ].join("\n");
  });
});
