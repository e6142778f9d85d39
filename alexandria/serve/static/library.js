// Sort and filter the books table, and follow a running ingest by polling /api/status.
// Values from the server are only ever set with textContent, never as markup.
"use strict";

const table = document.getElementById("books");
const rows = () => Array.from(table.tBodies[0].rows);
const cell = (row, key) => row.querySelector(`td[data-key="${key}"]`).textContent;

function sortBy(th) {
  const key = th.dataset.key, numeric = th.dataset.type === "number";
  const ascending = th.getAttribute("aria-sort") !== "ascending";
  table.querySelectorAll("th").forEach((h) => h.removeAttribute("aria-sort"));
  th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const value = (row) => numeric ? Number(cell(row, key) || -1) : cell(row, key).toLocaleLowerCase();
  const sorted = rows().sort((a, b) => {
    const x = value(a), y = value(b);
    return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
  });
  table.tBodies[0].append(...sorted);
}

table.querySelectorAll("th[data-key]").forEach((th) => {
  th.addEventListener("click", () => sortBy(th));
  th.addEventListener("keydown", (e) => { if (e.key === "Enter") sortBy(th); });
});

const filterBox = document.getElementById("book-filter");
const statusBox = document.getElementById("status-filter");
function applyFilter() {
  const words = filterBox.value.toLocaleLowerCase().trim();
  const status = statusBox.value;
  rows().forEach((row) => {
    const text = ["title", "authors", "reason"].map((k) => cell(row, k)).join(" ").toLocaleLowerCase();
    row.hidden = (status && row.dataset.status !== status) || (words && !text.includes(words));
  });
}
filterBox.addEventListener("input", applyFilter);
statusBox.addEventListener("change", applyFilter);

document.querySelectorAll("td.time").forEach((td) => {
  td.textContent = new Date(Number(td.dataset.epoch) * 1000).toLocaleString();
});

function set(id, value) {
  const el = document.getElementById(id);
  if (el) el.textContent = value === null || value === undefined ? "?" : String(value);
}

async function poll() {
  try {
    const response = await fetch("/api/status", {credentials: "same-origin"});
    if (response.ok) {
      const s = await response.json();
      const t = s.totals;
      set("total-books", t.books); set("total-done", t.done); set("total-failed", t.failed);
      set("total-skipped", t.skipped); set("total-pending", t.pending + t["in-progress"]);
      set("total-chunks", t.chunks);
      const live = document.getElementById("live");
      const p = s.progress;
      live.hidden = !p;
      if (p) {
        set("live-done", p.books_done); set("live-failed", p.books_failed);
        set("live-todo", p.books_to_do); set("live-planned", p.books_planned);
        set("live-chunks", p.chunks); set("live-rate", p.chunks_per_min); set("live-eta", p.eta_s);
        const bar = document.getElementById("live-bar");
        bar.max = p.books_planned || 1;
        bar.value = p.books_done + p.books_failed + p.books_skipped;
      }
    }
  } catch (e) {
    // The server restarting: try again at the next tick.
  }
  setTimeout(poll, 2000);
}
setTimeout(poll, 2000);
