// Surrounding text on demand. Book text is only ever set with textContent, never as markup.
"use strict";

function paragraph(text, cls) {
  const p = document.createElement("p");
  p.className = cls;
  p.dir = "auto";
  p.textContent = text;
  return p;
}

async function showContext(button) {
  const box = button.nextElementSibling;
  if (!box.hidden) { box.hidden = true; button.textContent = "Surrounding text"; return; }
  if (!box.dataset.loaded) {
    const query = new URLSearchParams({book_key: button.dataset.bookKey,
                                       chunk_index: button.dataset.chunkIndex});
    const response = await fetch("/api/context?" + query, {credentials: "same-origin"});
    const data = await response.json();
    box.replaceChildren();
    if (!response.ok) {
      box.append(paragraph(data.error || "Could not load the surrounding text.", "error"));
    } else if (data.parent && data.parent.text) {
      box.append(paragraph("Chapter: " + (data.parent.chapter || ""), "label"),
                 paragraph(data.parent.text, "parent"));
    } else {
      if (data.before) box.append(paragraph(data.before, "before"));
      box.append(paragraph(data.text || "", "here"));
      if (data.after) box.append(paragraph(data.after, "after"));
    }
    box.dataset.loaded = "1";
  }
  box.hidden = false;
  button.textContent = "Hide surrounding text";
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button.more");
  if (button) showContext(button);
});
// A filter applies at once when a question is already there.
document.querySelectorAll(".filters select").forEach((select) => {
  select.addEventListener("change", () => {
    if (document.getElementById("q").value.trim()) select.form.requestSubmit();
  });
});
