// The "Browse the store" tab: a paged, filtered list of the store's videos, and one video
// opened: its landmarks as a moving skeleton, the parts found per frame, the model's top 5
// and the metadata.
import { api, postJson, report } from "./api.js";
import { $, headerRow, renderBars } from "./dom.js";
import { drawLandmarks, fitClip } from "./landmarks.js";

const LIMIT = 20; // videos a page
let page; // main.js's shared state: page.info is the server's /v1/info
let offset = 0;
let skeletonTimer = null;

export function setup(shared) {
  page = shared;
  const relist = () => { offset = 0; loadList().catch(report); };
  $("browse-split").addEventListener("change", relist);
  $("browse-gloss").addEventListener("change", relist);
  $("browse-q").addEventListener("input", relist);
  $("browse-prev").addEventListener("click", () => { offset = Math.max(0, offset - LIMIT); loadList().catch(report); });
  $("browse-next").addEventListener("click", () => { offset += LIMIT; loadList().catch(report); });
  $("video-back").addEventListener("click", closeVideo);
}

export function open() { return loadList(); }

// The filters offer the store's splits and glosses.
export function showInfo(info) {
  const s = info.store;
  const split = $("browse-split");
  split.length = 1;
  for (const name of Object.keys(s.splits || {})) split.add(new Option(`${name} (${s.splits[name]})`, name));
  const gloss = $("browse-gloss");
  gloss.length = 1;
  for (const g of Object.values(s.labels || {}).sort()) gloss.add(new Option(g, g));
}

async function loadList() {
  const q = new URLSearchParams({ offset: String(offset), limit: String(LIMIT) });
  if ($("browse-split").value) q.set("split", $("browse-split").value);
  if ($("browse-gloss").value) q.set("gloss", $("browse-gloss").value);
  if ($("browse-q").value.trim()) q.set("q", $("browse-q").value.trim());
  const body = await api(`/v1/videos?${q}`);
  const rows = $("browse-rows");
  rows.textContent = "";
  for (const v of body.items) {
    const tr = rows.insertRow();
    tr.dataset.videoId = v.video_id;
    for (const c of [v.video_id, v.gloss, v.label, v.split]) tr.insertCell().textContent = c;
    tr.addEventListener("click", () => openVideo(v.video_id).catch(report));
  }
  const last = Math.min(offset + LIMIT, body.total);
  $("browse-page").textContent = body.total ? `${offset + 1}-${last} of ${body.total}` : "no videos";
  $("browse-prev").disabled = offset === 0;
  $("browse-next").disabled = last >= body.total;
}

async function feature(videoId, stream) {
  return api(`/v1/videos/${encodeURIComponent(videoId)}/features/${stream}`);
}

async function openVideo(videoId) {
  $("browse-list").hidden = true;
  $("video-view").hidden = false;
  $("video-title").textContent = videoId;
  const meta = await api(`/v1/videos/${encodeURIComponent(videoId)}`);
  $("video-title").textContent = `${videoId}: ${meta.gloss || "(unlabeled)"} (${meta.split})`;
  $("video-meta").textContent = JSON.stringify(meta, null, 1);
  $("video-truth").textContent = `true gloss: ${meta.gloss || "none"}`;
  const layout = page.info.store.landmark_layout;
  if (meta.streams.includes("landmarks")) {
    const [points, mask] = await Promise.all([feature(videoId, "landmarks"), feature(videoId, "landmark_mask")]);
    renderMask(layout, mask.data);
    animateSkeleton(layout, points.data, mask.data);
  }
  const pred = await postJson("/v1/predict", { video_ids: [videoId], top_k: 5 });
  renderBars($("video-bars"), pred.predictions[0].top_k, meta.gloss);
}

function renderMask(layout, mask) {
  const table = $("video-mask");
  table.textContent = "";
  headerRow(table, mask.map((_, t) => t));
  layout.parts.forEach((part, p) => {
    const tr = table.insertRow();
    const th = document.createElement("th");
    th.className = "part";
    th.textContent = part.replace("_", " ");
    tr.appendChild(th);
    mask.forEach((row) => { tr.insertCell().className = row[p] ? "on" : "off"; });
  });
}

function animateSkeleton(layout, frames, mask) {
  clearInterval(skeletonTimer);
  const canvas = $("skeleton");
  const ctx = canvas.getContext("2d");
  const fit = fitClip(layout, frames, mask, canvas.width, 20);
  let t = 0;
  const draw = () => {
    ctx.fillStyle = "#111827";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    if (fit) drawLandmarks(ctx, layout, frames[t], mask[t], 0, 0, fit);
    $("skeleton-frame").textContent = `frame ${t + 1} / ${frames.length}`;
    t = (t + 1) % frames.length;
  };
  draw();
  skeletonTimer = setInterval(draw, 250);
}

function closeVideo() {
  clearInterval(skeletonTimer);
  $("video-view").hidden = true;
  $("browse-list").hidden = false;
}
