// The "Try a sign" tab: record a clip from the camera (or drop a file), send it to
// POST /v1/predict/video, and show the top 5, the stage timings and the sampled frames.
// A long video goes to POST /v1/spot instead: its signs on a timeline under it.
import { api } from "./api.js";
import { recordFromCamera, startCamera } from "./camera.js";
import { $, renderBars, renderRows, say } from "./dom.js";
import { renderFrames } from "./landmarks.js";
import { renderTimeline } from "./timeline.js";

// A video longer than this (or than the server's clip limit) holds several signs: spot it.
const LONG_SECONDS = 6;

let page; // main.js's shared state: page.info is the server's /v1/info

// Why an upload failed, by status, before the server's own words.
const UPLOAD_ERRORS = {
  413: "Too long or too large: ", 415: "Not a video: ", 422: "Cannot decode this clip: ",
  503: "The server cannot extract clips now: ",
};

// What the message line says of a failed upload ("no model yet" as the server says it).
function uploadError(err) {
  const prefix = err.status === 503 && /^no model/.test(err.message) ? "" : UPLOAD_ERRORS[err.status];
  return (prefix || "") + err.message;
}

export function setup(shared) {
  page = shared;
  $("record").addEventListener("click", () => record());
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

export async function open() {
  try {
    await startCamera($("try-camera"));
  } catch (err) {
    say($("try-message"), err.message, "error");
  }
}

async function record() {
  const button = $("record");
  button.disabled = true;
  try {
    let clip;
    try {
      clip = await recordFromCamera($("try-camera"), Number($("record-seconds").value),
        $("countdown"), (text) => { $("record-state").textContent = text; });
    } catch (err) {
      say($("try-message"), err.message, "error");
      return;
    }
    await classify(clip);
  } finally {
    button.disabled = false;
  }
}

async function classify(file) {
  const msg = $("try-message");
  say(msg, "");
  $("try-bars").textContent = "";
  $("try-timings").textContent = "";
  $("try-frames").textContent = "";
  $("try-spot").hidden = true;
  $("try-sampled").hidden = false;
  const limit = page.info && page.info.serving.max_upload_bytes;
  if (limit && file.size > limit) {
    say(msg, `${file.name} is ${(file.size / 1048576).toFixed(1)} MiB; this server takes at most ${(limit / 1048576).toFixed(1)} MiB.`, "error");
    return;
  }
  const seconds = await duration(file);
  const clipLimit = page.info ? page.info.serving.max_clip_seconds : 30;
  if (seconds > Math.min(LONG_SECONDS, clipLimit)) {
    await spotVideo(file, seconds);
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
    say(msg, uploadError(err), "error");
    return;
  }
  await showResult(file, body);
}

// One prediction's answer: what the page shows of it.
async function showResult(file, body) {
  $("try-message").textContent = `${file.name}: top 5 of ${(page.info && page.info.model && page.info.model.num_classes) || "?"} classes`;
  renderBars($("try-bars"), body.predictions[0].top_k);
  const t = body.timings;
  renderRows($("try-timings"), [
    ["decode", `${t.decode_ms.toFixed(0)} ms`], ["landmarks", `${t.landmarks_ms.toFixed(0)} ms`],
    ["encoder", `${t.encoder_ms.toFixed(0)} ms`], ["model", `${t.model_ms.toFixed(0)} ms`],
    ["upload", `${t.upload_ms.toFixed(0)} ms`], ["total", `${t.total_ms.toFixed(0)} ms`],
  ]);
  if (body.details) await renderFrames($("try-frames"), body.details);
}

// The file's length in seconds from its header (0 when the browser cannot tell, as for
// recordings whose WebM header has none: those are short).
function duration(file) {
  return new Promise((resolve) => {
    const probe = document.createElement("video");
    const url = URL.createObjectURL(file);
    const done = (value) => { URL.revokeObjectURL(url); resolve(value); };
    probe.preload = "metadata";
    probe.onloadedmetadata = () => done(Number.isFinite(probe.duration) ? probe.duration : 0);
    probe.onerror = () => done(0);
    probe.src = url;
  });
}

// A long video: POST /v1/spot, then the video with its signs on a timeline under it.
async function spotVideo(file, seconds) {
  const msg = $("try-message");
  msg.textContent = `finding the signs in ${file.name} (${seconds.toFixed(1)} s): MediaPipe reads every frame ...`;
  const form = new FormData();
  form.append("file", file, file.name);
  let doc;
  try {
    doc = await api("/v1/spot", { method: "POST", body: form });
  } catch (err) {
    say(msg, uploadError(err), "error");
    return;
  }
  showSegments(file, doc);
}

function showSegments(file, doc) {
  const found = doc.segments;
  $("try-message").textContent = `${file.name}: ${found.length} signs in ${(doc.frames / doc.fps).toFixed(1)} s (read at ${doc.fps.toFixed(0)} frames/s)`;
  $("try-spot-summary").textContent = found.map((s) => s.gloss).join(" ") || "none";
  const video = $("try-video");
  if (video.src) URL.revokeObjectURL(video.src);
  video.src = URL.createObjectURL(file);
  renderTimeline($("try-timeline"), doc, video);
  const table = $("try-segments");
  renderRows(table, found.map((s) => [
    `${s.start_s.toFixed(2)}-${s.end_s.toFixed(2)} s`, s.gloss, `${(100 * s.score).toFixed(0)}%`,
    s.top_k.slice(1, 3).map((c) => c.gloss).join(", "),
  ]));
  const head = table.createTHead().insertRow();
  for (const text of ["time", "gloss", "score", "then"]) {
    head.appendChild(document.createElement("th")).textContent = text;
  }
  const rows = table.tBodies.length ? [...table.tBodies[0].rows] : [];
  rows.forEach((row, i) => row.addEventListener("click", () => {
    video.currentTime = found[i].start_s;
    video.play().catch(() => {});
  }));
  $("try-sampled").hidden = true;
  $("try-spot").hidden = false;
}
