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
