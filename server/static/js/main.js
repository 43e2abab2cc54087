// The page over the service's /v1 routes: a header (server status, API key), the error
// banner, and one tab per module. Native ES modules, no libraries, no build step.
//
// A tab is a module that exports
//   setup(page)     once at start: wire its controls (keep `page` to read page.info);
//   open()          optional, async: each time its button is pressed (errors go to the banner);
//   showInfo(info)  optional: each time the server's /v1/info loads.
// Adding one: its module, a line in TABS below, a <nav> button with data-tab="NAME" and a
// <section id="tab-NAME" class="tab" hidden> in index.html.
import { api, readiness, report, setupKeyForm, showError } from "./api.js";
import { $ } from "./dom.js";
import * as browse from "./browse.js";
import * as live from "./live.js";
import * as model from "./model.js";
import * as teach from "./teach.js";
import * as tryTab from "./try.js";

const TABS = {
  try: tryTab,
  live,
  browse,
  model,
  teach,
};

// Shared by every tab: the server's /v1/info, and a way to load it again (after the
// model or the store changed).
const page = { info: null, reload: loadInfo };

function openTab(name) {
  for (const b of document.querySelectorAll("nav button")) {
    b.classList.toggle("active", b.dataset.tab === name);
  }
  for (const s of document.querySelectorAll("section.tab")) s.hidden = s.id !== `tab-${name}`;
  const tab = TABS[name];
  if (tab.open) tab.open().catch(report);
}

const activeTab = () => document.querySelector("nav button.active").dataset.tab;

// The status line and page.info; false when /v1/info cannot be read (the banner says why).
async function loadInfo() {
  const status = $("server-status");
  try {
    const ready = await readiness();
    status.textContent = ready.status === "ready" ? `ready · uploads ${ready.upload}` : ready.detail;
  } catch (_) {
    status.textContent = "server unreachable";
  }
  try {
    page.info = await api("/v1/info");
  } catch (err) {
    if (err.status !== 401) showError(`Cannot load the server's description: ${err.message}`);
    return false;
  }
  showError("");
  const s = page.info.store;
  status.textContent += ` · ${s.videos} videos, ${s.num_classes} classes, T=${s.num_frames}`;
  for (const tab of Object.values(TABS)) if (tab.showInfo) tab.showInfo(page.info);
  return true;
}

for (const tab of Object.values(TABS)) tab.setup(page);
for (const b of document.querySelectorAll("nav button")) {
  b.addEventListener("click", () => openTab(b.dataset.tab));
}
setupKeyForm(async () => { if (await loadInfo()) openTab(activeTab()); });
loadInfo().then((ok) => { if (ok) openTab(activeTab()); });
