// Minimal progressive enhancement: confirmation for destructive forms, copy buttons, dialogs, the phone menu,
// chart tooltips and self-refreshing live pages. Every page works without it (forms still post, dialogs fall
// back to their own pages, the menu is a link list, charts carry <title>s, the refresh link reloads).
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
});
document.addEventListener("click", (event) => {
  const copy = event.target.closest("[data-copy]");
  if (copy) {
    const source = document.querySelector(copy.dataset.copy);
    if (source && navigator.clipboard) {
      navigator.clipboard.writeText(source.textContent.trim()).then(() => { copy.textContent = "Copied"; });
    }
  }
  const opener = event.target.closest("[data-dialog]");
  if (opener) {
    const dialog = document.getElementById(opener.dataset.dialog);
    if (dialog && dialog.showModal) { event.preventDefault(); dialog.showModal(); }
  }
  const closer = event.target.closest("[data-close]");
  if (closer) closer.closest("dialog")?.close();
  const menu = event.target.closest("[data-menu-toggle]");
  if (menu) {
    event.preventDefault();
    const open = document.body.classList.toggle("menu-open");
    menu.setAttribute("aria-expanded", String(open));
  }
});

// Chart tooltips: each bucket column carries its values in data-tip; show them on hover and keyboard focus.
let tip = null;
function showTip(target) {
  if (!tip) { tip = document.createElement("div"); tip.className = "chart-tip"; tip.setAttribute("role", "tooltip"); document.body.append(tip); }
  tip.textContent = target.dataset.tip;
  tip.hidden = false;
  const box = target.getBoundingClientRect();
  const left = Math.min(window.innerWidth - tip.offsetWidth - 8, Math.max(8, box.left + box.width / 2 - tip.offsetWidth / 2));
  tip.style.left = `${left}px`;
  tip.style.top = `${Math.max(8, box.top - tip.offsetHeight - 6)}px`;
}
function hideTip() { if (tip) tip.hidden = true; }
for (const kind of ["mouseover", "focusin"]) {
  document.addEventListener(kind, (event) => { const hit = event.target.closest?.("[data-tip]"); if (hit) showTip(hit); });
}
for (const kind of ["mouseout", "focusout"]) {
  document.addEventListener(kind, (event) => { if (event.target.closest?.("[data-tip]")) hideTip(); });
}

// Narrow screens stack table rows into cards: each cell is labelled with its column's header (admin.css shows it).
function labelCells(root) {
  for (const table of root.querySelectorAll("table")) {
    const header = table.querySelector("tr:has(> th):not(:has(> td))");
    if (!header) continue;
    const names = [];
    for (const th of header.children) { for (let i = 0; i < th.colSpan; i++) names.push(th.textContent.trim()); }
    for (const row of table.rows) {
      if (row === header) continue;
      let column = 0;
      for (const cell of row.children) {
        if (cell.tagName === "TD" && !cell.dataset.label && names[column]) cell.dataset.label = names[column];
        column += cell.colSpan;
      }
    }
  }
}
labelCells(document);

// Live pages (data-refresh="seconds" on #live): fetch the page again and swap the live region in place, so the
// scroll position stays. Skipped while the operator is editing or navigating it (anything in it focused, a field
// changed since the last swap, a dialog or menu open) or the tab is hidden; stops when the session has ended (redirect to sign-in).
const live = document.getElementById("live");
if (live && live.dataset.refresh) {
  let dirty = false;
  live.addEventListener("input", () => { dirty = true; });
  live.addEventListener("change", () => { dirty = true; });
  const busy = () => dirty || document.hidden
    || live.contains(document.activeElement)
    || document.querySelector("dialog[open], details[open]");
  const timer = window.setInterval(async () => {
    if (busy()) { live.dataset.heldTicks = String(Number(live.dataset.heldTicks || 0) + 1); return; }
    try {
      const response = await fetch(window.location.href, { headers: { "X-Live-Refresh": "1" }, credentials: "same-origin" });
      if (response.redirected || !response.ok) { if (response.redirected) window.clearInterval(timer); return; }
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.getElementById("live");
      if (fresh && !busy()) {
        live.innerHTML = fresh.innerHTML;
        labelCells(live);
        live.dataset.refreshedAt = new Date().toISOString();
      }
    } catch (error) { /* offline for a moment: try again next tick */ }
  }, Number(live.dataset.refresh) * 1000);
}
