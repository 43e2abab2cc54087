// The page over the service's /v1 routes: try a sign (record or drop a clip), live
// recognition over the /v1/stream WebSocket, and a browser of the store and the model.
// Plain JavaScript, no libraries, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, offset: 0, limit: 20, skeletonTimer: null, live: null };

// Skeleton edges (MediaPipe's pose and hand topologies), by point index within a part.
const POSE_EDGES = [[11, 12], [11, 13], [13, 15], [12, 14], [14, 16], [11, 23], [12, 24],
  [23, 24], [23, 25], [25, 27], [24, 26], [26, 28], [15, 17], [15, 19], [15, 21], [16, 18],
  [16, 20], [16, 22], [0, 1], [1, 2], [2, 3], [3, 7], [0, 4], [4, 5], [5, 6], [6, 8], [9, 10]];
const HAND_EDGES = [[0, 1], [1, 2], [2, 3], [3, 4], [0, 5], [5, 6], [6, 7], [7, 8], [5, 9],
  [9, 10], [10, 11], [11, 12], [9, 13], [13, 14], [14, 15], [15, 16], [13, 17], [17, 18],
  [18, 19], [19, 20], [0, 17]];
const PART_STYLE = {
  pose: ["#facc15", POSE_EDGES], left_hand: ["#22d3ee", HAND_EDGES],
  right_hand: ["#f472b6", HAND_EDGES], face: ["#a3e635", []],
};

// -- errors and the API key ------------------------------------------------------------
function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = !text;
}

function apiKey() { return localStorage.getItem("asl-api-key") || ""; }

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

function detailText(body, status) {
  const d = body && body.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) return d.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ");
  return `HTTP ${status}`;
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (apiKey()) headers["X-API-Key"] = apiKey();
  let response;
  try {
    response = await fetch(path, Object.assign({}, options, { headers }));
  } catch (err) {
    throw new ApiError(0, `the server cannot be reached (${err.message})`);
  }
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    const detail = detailText(body, response.status);
    if (response.status === 401) {
      showError(`API key: ${detail}. Enter the server's key at the top right.`);
      $("api-key").focus();
    }
    throw new ApiError(response.status, detail);
  }
  return body;
}

// An error the user must see (401s already said so, with the key box).
function report(err) {
  if (!(err instanceof ApiError && err.status === 401)) showError(err.message || String(err));
}

// -- tabs ------------------------------------------------------------------------------
function openTab(name) {
  for (const b of document.querySelectorAll("nav button")) {
    b.classList.toggle("active", b.dataset.tab === name);
  }
  for (const s of document.querySelectorAll("section.tab")) s.hidden = s.id !== `tab-${name}`;
  if (name === "try" || name === "live") {
    startCamera(name).catch((err) => {
      const el = $(name === "try" ? "try-message" : "live-state");
      el.className = "error";
      el.textContent = err.message;
    });
  }
  if (name === "browse") loadList().catch(report);
  if (name === "model") loadModel().catch(report);
}

// -- bars and tables -------------------------------------------------------------------
function renderBars(el, topK, truth) {
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

function renderRows(table, rows) {
  table.textContent = "";
  for (const cells of rows) {
    const tr = table.insertRow();
    for (const c of cells) tr.insertCell().textContent = c;
  }
}

// -- landmarks -------------------------------------------------------------------------
function parts(layout) {
  const out = [];
  let offset = 0;
  layout.parts.forEach((name, i) => {
    out.push({ name, index: i, offset, size: layout.sizes[i] });
    offset += layout.sizes[i];
  });
  return out;
}

// Draw one frame's landmarks (points (K, 3), x and y in 0..1) on a canvas context.
function drawLandmarks(ctx, layout, points, mask, w, h, fit) {
  const place = fit || ((p) => [p[0] * w, p[1] * h]);
  for (const part of parts(layout)) {
    if (!mask[part.index]) continue;
    const [colour, edges] = PART_STYLE[part.name] || ["#fff", []];
    const pts = points.slice(part.offset, part.offset + part.size).map(place);
    ctx.strokeStyle = colour;
    ctx.fillStyle = colour;
    ctx.lineWidth = 2;
    for (const [a, b] of edges) {
      if (a >= pts.length || b >= pts.length) continue;
      ctx.beginPath();
      ctx.moveTo(pts[a][0], pts[a][1]);
      ctx.lineTo(pts[b][0], pts[b][1]);
      ctx.stroke();
    }
    for (const [x, y] of pts) {
      ctx.beginPath();
      ctx.arc(x, y, 2.5, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("frame image did not load"));
    img.src = src;
  });
}

async function renderFrames(details) {
  const box = $("try-frames");
  box.textContent = "";
  for (let t = 0; t < details.frames.length; t++) {
    const img = await loadImage(details.frames[t]);
    const canvas = document.createElement("canvas");
    canvas.width = img.width;
    canvas.height = img.height;
    canvas.dataset.frame = details.frames[t];
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const mask = details.landmark_mask ? details.landmark_mask[t] : [];
    if (details.landmarks) {
      drawLandmarks(ctx, details.layout, details.landmarks[t], mask, img.width, img.height);
    }
    const fig = document.createElement("figure");
    const found = details.layout ? details.layout.parts.filter((_, i) => mask[i]) : [];
    canvas.dataset.parts = found.join(",");
    const hands = found.filter((p) => p.endsWith("_hand")).length;
    const caption = document.createElement("figcaption");
    caption.textContent = `${details.frame_times[t].toFixed(2)} s · ${hands ? hands + " hand" + (hands > 1 ? "s" : "") : "no hands"}`;
    fig.append(canvas, caption);
    box.appendChild(fig);
  }
}

// -- try a sign ------------------------------------------------------------------------
const cameras = {};

function cameraError(err) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return "This browser gives no camera here: the page needs https or http://localhost.";
  }
  if (err && (err.name === "NotAllowedError" || err.name === "SecurityError")) {
    return "Camera permission was denied. Allow the camera for this site, or drop a video file.";
  }
  if (err && (err.name === "NotFoundError" || err.name === "OverconstrainedError")) {
    return "No camera was found. Connect one, or drop a video file.";
  }
  return `The camera cannot start: ${err ? err.message || err.name : "unknown error"}`;
}

async function startCamera(which) {
  const video = $(`${which}-camera`);
  if (cameras.stream) {
    video.srcObject = cameras.stream;
    return cameras.stream;
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) throw new Error(cameraError(null));
  try {
    cameras.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (err) {
    throw new Error(cameraError(err));
  }
  video.srcObject = cameras.stream;
  return cameras.stream;
}

function recorderType() {
  const types = ["video/webm;codecs=vp9", "video/webm;codecs=vp8", "video/webm", "video/mp4"];
  return types.find((t) => window.MediaRecorder && MediaRecorder.isTypeSupported(t)) || "";
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function record() {
  const msg = $("try-message");
  const button = $("record");
  button.disabled = true;
  try {
    let stream;
    try {
      stream = await startCamera("try");
    } catch (err) {
      msg.textContent = err.message;
      msg.className = "error";
      return;
    }
    const countdown = $("countdown");
    countdown.hidden = false;
    for (let n = 3; n > 0; n--) {
      countdown.textContent = String(n);
      await sleep(1000);
    }
    countdown.textContent = "recording";
    const type = recorderType();
    const recorder = new MediaRecorder(stream, type ? { mimeType: type } : {});
    const chunks = [];
    recorder.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
    const stopped = new Promise((r) => { recorder.onstop = r; });
    recorder.start();
    $("record-state").textContent = `recording (${recorder.mimeType || "default type"})`;
    await sleep(1000 * Number($("record-seconds").value));
    recorder.stop();
    await stopped;
    countdown.hidden = true;
    const mime = (recorder.mimeType || "video/webm").split(";")[0];
    const ext = mime.includes("mp4") ? "mp4" : "webm";
    $("record-state").textContent = `recorded ${(chunks.reduce((n, c) => n + c.size, 0) / 1024).toFixed(0)} KiB`;
    await classify(new File(chunks, `recording.${ext}`, { type: mime }));
  } finally {
    button.disabled = false;
    $("countdown").hidden = true;
  }
}

async function classify(file) {
  const msg = $("try-message");
  msg.className = "muted";
  $("try-bars").textContent = "";
  $("try-timings").textContent = "";
  $("try-frames").textContent = "";
  const limit = state.info && state.info.serving.max_upload_bytes;
  if (limit && file.size > limit) {
    msg.className = "error";
    msg.textContent = `${file.name} is ${(file.size / 1048576).toFixed(1)} MiB; this server takes at most ${(limit / 1048576).toFixed(1)} MiB.`;
    return;
  }
  msg.textContent = `sending ${file.name} ...`;
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("top_k", "5");
  form.append("details", "true");
  let body;
  try {
    body = await api("/v1/predict/video", { method: "POST", body: form });
  } catch (err) {
    msg.className = "error";
    const why = {
      413: "Too long or too large: ", 415: "Not a video: ", 422: "Cannot decode this clip: ",
      503: "The server cannot extract clips now: ",
    }[err.status] || "";
    msg.textContent = why + err.message;
    return;
  }
  msg.textContent = `${file.name}: top 5 of ${state.info ? state.info.model.num_classes : "?"} classes`;
  renderBars($("try-bars"), body.predictions[0].top_k);
  const t = body.timings;
  renderRows($("try-timings"), [
    ["decode", `${t.decode_ms.toFixed(0)} ms`], ["landmarks", `${t.landmarks_ms.toFixed(0)} ms`],
    ["encoder", `${t.encoder_ms.toFixed(0)} ms`], ["model", `${t.model_ms.toFixed(0)} ms`],
    ["upload", `${t.upload_ms.toFixed(0)} ms`], ["total", `${t.total_ms.toFixed(0)} ms`],
  ]);
  if (body.details) await renderFrames(body.details);
}

function setupDrop() {
  const drop = $("drop");
  const file = $("file");
  file.addEventListener("change", () => { if (file.files[0]) classify(file.files[0]); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) classify(e.dataTransfer.files[0]);
  });
}

// -- live ------------------------------------------------------------------------------
async function liveStart() {
  const info = $("live-state");
  let stream;
  try {
    stream = await startCamera("live");
  } catch (err) {
    info.textContent = err.message;
    info.className = "error";
    return;
  }
  const video = $("live-camera");
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const query = new URLSearchParams({ top_k: "5" });
  if (apiKey()) query.set("api_key", apiKey());
  const ws = new WebSocket(`${proto}://${location.host}/v1/stream?${query}`);
  const canvas = document.createElement("canvas");
  const live = { ws, timer: null, stream };
  state.live = live;
  $("live-start").disabled = true;
  $("live-stop").disabled = false;
  info.className = "muted";
  info.textContent = "connecting ...";
  ws.onmessage = (event) => {
    const m = JSON.parse(event.data);
    if (m.type === "ready") {
      info.textContent = `live: window of ${m.num_frames} frames, a prediction every ${m.every}`;
      const fps = Number($("live-fps").value);
      live.timer = setInterval(() => sendFrame(ws, video, canvas), 1000 / fps);
    } else if (m.type === "prediction") {
      renderBars($("live-bars"), m.top_k);
      const hands = $("live-hands");
      hands.textContent = "";
      for (const [part, on] of Object.entries(m.hands || {})) {
        const tag = document.createElement("span");
        tag.className = on ? "on" : "";
        tag.textContent = `${part.replace("_", " ")} ${on ? "seen" : "not seen"}`;
        hands.appendChild(tag);
      }
      $("live-stats").textContent = `frame ${m.frame} · window ${m.window} · sent ${m.received} · processed ${m.processed} · dropped ${m.dropped} · ${m.latency_ms.toFixed(0)} ms`;
      $("live-stats").dataset.predictions = String(Number($("live-stats").dataset.predictions || 0) + 1);
    } else if (m.type === "error") {
      info.className = "error";
      info.textContent = m.detail;
      if (/API key/.test(m.detail)) showError(`API key: ${m.detail}. Enter the server's key at the top right.`);
    }
  };
  ws.onclose = (event) => {
    clearInterval(live.timer);
    $("live-start").disabled = false;
    $("live-stop").disabled = true;
    if (event.code !== 1000 && event.code !== 1005) {
      info.className = "error";
      info.textContent = `stream closed (${event.code}): ${event.reason || "connection lost"}`;
    } else if (info.className !== "error") {
      info.textContent = "stopped";
    }
  };
}

function sendFrame(ws, video, canvas) {
  if (ws.readyState !== WebSocket.OPEN || !video.videoWidth) return;
  if (ws.bufferedAmount > 256 * 1024) return; // the network is behind: skip this frame
  const scale = Math.min(1, 320 / video.videoWidth);
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  canvas.toBlob((blob) => { if (blob && ws.readyState === WebSocket.OPEN) ws.send(blob); }, "image/jpeg", 0.8);
}

function liveStop() {
  if (state.live) state.live.ws.close(1000, "stopped by the user");
}

// -- browse the store ------------------------------------------------------------------
async function loadList() {
  const q = new URLSearchParams({ offset: String(state.offset), limit: String(state.limit) });
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
  const last = Math.min(state.offset + state.limit, body.total);
  $("browse-page").textContent = body.total ? `${state.offset + 1}-${last} of ${body.total}` : "no videos";
  $("browse-prev").disabled = state.offset === 0;
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
  const layout = state.info.store.landmark_layout;
  if (meta.streams.includes("landmarks")) {
    const [points, mask] = await Promise.all([feature(videoId, "landmarks"), feature(videoId, "landmark_mask")]);
    renderMask(layout, mask.data);
    animateSkeleton(layout, points.data, mask.data);
  }
  const pred = await api("/v1/predict", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ video_ids: [videoId], top_k: 5 }),
  });
  renderBars($("video-bars"), pred.predictions[0].top_k, meta.gloss);
}

function renderMask(layout, mask) {
  const table = $("video-mask");
  table.textContent = "";
  const head = table.insertRow();
  head.appendChild(document.createElement("th"));
  mask.forEach((_, t) => { const th = document.createElement("th"); th.textContent = t; head.appendChild(th); });
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
  clearInterval(state.skeletonTimer);
  const canvas = $("skeleton");
  const ctx = canvas.getContext("2d");
  // One box for the whole clip (found points only), so the figure moves, not the frame.
  let lo = [Infinity, Infinity], hi = [-Infinity, -Infinity];
  frames.forEach((pts, t) => parts(layout).forEach((part) => {
    if (!mask[t][part.index]) return;
    for (const p of pts.slice(part.offset, part.offset + part.size)) {
      lo = [Math.min(lo[0], p[0]), Math.min(lo[1], p[1])];
      hi = [Math.max(hi[0], p[0]), Math.max(hi[1], p[1])];
    }
  }));
  const span = Math.max(hi[0] - lo[0], hi[1] - lo[1], 1e-6);
  const pad = 20, size = canvas.width - 2 * pad;
  const fit = (p) => [pad + ((p[0] - lo[0]) / span) * size, pad + ((p[1] - lo[1]) / span) * size];
  let t = 0;
  const draw = () => {
    ctx.fillStyle = "#111827";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    if (Number.isFinite(lo[0])) drawLandmarks(ctx, layout, frames[t], mask[t], 0, 0, fit);
    $("skeleton-frame").textContent = `frame ${t + 1} / ${frames.length}`;
    t = (t + 1) % frames.length;
  };
  draw();
  state.skeletonTimer = setInterval(draw, 250);
}

function closeVideo() {
  clearInterval(state.skeletonTimer);
  $("video-view").hidden = true;
  $("browse-list").hidden = false;
}

// -- the model -------------------------------------------------------------------------
async function loadModel() {
  const m = state.info.model;
  renderRows($("model-info"), [
    ["fusion", m.fusion], ["modalities", String(m.modalities)],
    ["parameters", m.parameters.toLocaleString()], ["classes", m.num_classes],
    ["frames (T)", m.num_frames], ["encoder", m.encoder && m.encoder.model_id],
    ...Object.entries(m.metrics || {}).map(([k, v]) => [k, typeof v === "number" ? v.toFixed(4) : JSON.stringify(v)]),
  ]);
  let report;
  try {
    report = await api("/v1/model/report");
  } catch (err) {
    $("report-message").textContent = err.status === 404 ? `No eval report: ${err.message}.` : err.message;
    return;
  }
  $("report-message").textContent = `${report.split} split: ${report.count} videos, top-1 ${(100 * report.top1).toFixed(1)}%, top-5 ${(100 * report.top5).toFixed(1)}% (${report.path})`;
  const perClass = $("per-class");
  renderRows(perClass, Object.entries(report.per_class || {})
    .sort((a, b) => a[1].accuracy - b[1].accuracy)
    .map(([name, c]) => [name, `${(100 * c.accuracy).toFixed(1)}%`, `${c.count} videos`]));
  const names = Object.keys(report.labels || {}).sort((a, b) => a - b).map((k) => report.labels[k]);
  const table = $("confusion");
  table.textContent = "";
  const head = table.insertRow();
  head.appendChild(document.createElement("th"));
  names.forEach((n) => { const th = document.createElement("th"); th.textContent = n; head.appendChild(th); });
  (report.confusion || []).forEach((row, i) => {
    const tr = table.insertRow();
    const th = document.createElement("th");
    th.textContent = names[i] || i;
    tr.appendChild(th);
    const total = row.reduce((a, b) => a + b, 0) || 1;
    row.forEach((n, j) => {
      const td = tr.insertCell();
      td.textContent = n || "";
      const alpha = n / total;
      td.style.background = `rgba(${i === j ? "22,163,74" : "220,38,38"},${alpha.toFixed(2)})`;
    });
  });
}

// -- start -----------------------------------------------------------------------------
async function loadInfo() {
  try {
    const ready = await fetch("/readyz").then((r) => r.json());
    $("server-status").textContent = ready.status === "ready" ? `ready · uploads ${ready.upload}` : ready.detail;
  } catch (_) {
    $("server-status").textContent = "server unreachable";
  }
  try {
    state.info = await api("/v1/info");
  } catch (err) {
    if (err.status !== 401) showError(`Cannot load the server's description: ${err.message}`);
    return false;
  }
  showError("");
  const s = state.info.store;
  $("server-status").textContent += ` · ${s.videos} videos, ${s.num_classes} classes, T=${s.num_frames}`;
  const split = $("browse-split");
  split.length = 1;
  for (const name of Object.keys(s.splits || {})) split.add(new Option(`${name} (${s.splits[name]})`, name));
  const gloss = $("browse-gloss");
  gloss.length = 1;
  for (const g of Object.values(s.labels || {}).sort()) gloss.add(new Option(g, g));
  return true;
}

function setup() {
  $("api-key").value = apiKey();
  $("key-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    localStorage.setItem("asl-api-key", $("api-key").value.trim());
    if (await loadInfo()) openTab(document.querySelector("nav button.active").dataset.tab);
  });
  for (const b of document.querySelectorAll("nav button")) {
    b.addEventListener("click", () => openTab(b.dataset.tab));
  }
  $("record").addEventListener("click", () => record());
  setupDrop();
  $("live-start").addEventListener("click", () => liveStart());
  $("live-stop").addEventListener("click", liveStop);
  const relist = () => { state.offset = 0; loadList().catch(report); };
  $("browse-split").addEventListener("change", relist);
  $("browse-gloss").addEventListener("change", relist);
  $("browse-q").addEventListener("input", relist);
  $("browse-prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); loadList().catch(report); });
  $("browse-next").addEventListener("click", () => { state.offset += state.limit; loadList().catch(report); });
  $("video-back").addEventListener("click", closeVideo);
  loadInfo().then((ok) => { if (ok) openTab("try"); });
}

setup();
