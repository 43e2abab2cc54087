// The few DOM helpers every tab uses: look up by id, say something in a message line,
// and draw top-k bars and plain tables.

export const $ = (id) => document.getElementById(id);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A message line: the text, styled "muted" (news) or "error" (something went wrong).
export function say(el, text, className = "muted") {
  el.className = className;
  el.textContent = text;
}

// One bar per class of a top-k answer ({gloss, label, prob}); the true gloss in bold.
export function renderBars(el, topK, truth) {
  el.textContent = "";
  for (const c of topK) {
    const row = document.createElement("div");
    row.className = "bar" + (truth !== undefined && c.gloss === truth ? " truth" : "");
    const pct = (100 * c.prob).toFixed(1);
    row.innerHTML = '<span class="gloss"></span><span class="track"><span class="fill"></span></span><span class="prob"></span>';
    row.querySelector(".gloss").textContent = c.gloss || String(c.label);
    row.querySelector(".fill").style.width = `${pct}%`;
    row.querySelector(".prob").textContent = `${pct}%`;
    el.appendChild(row);
  }
}

// Replace a table's rows with `rows` (arrays of cell texts).
export function renderRows(table, rows) {
  table.textContent = "";
  for (const cells of rows) {
    const tr = table.insertRow();
    for (const c of cells) tr.insertCell().textContent = c;
  }
}

// A header row: an empty corner cell, then one <th> per label; returns the row.
export function headerRow(table, labels) {
  const head = table.insertRow();
  head.appendChild(document.createElement("th"));
  labels.forEach((text) => {
    const th = document.createElement("th");
    th.textContent = text;
    head.appendChild(th);
  });
  return head;
}
