// The "Try a sign" tab: record a clip from the camera (or drop a file), send it to
// POST /v1/predict/video, and show the top 5, the stage timings and the sampled frames.
import { api } from "./api.js";
import { startCamera, recordClip } from "./camera.js";
import { $, renderBars, renderRows, say } from "./dom.js";
import { renderFrames } from "./landmarks.js";

let page; // main.js's shared state: page.info is the server's /v1/info

// Why an upload failed, by status, before the server's own words.
const UPLOAD_ERRORS = {
  413: "Too long or too large: ", 415: "Not a video: ", 422: "Cannot decode this clip: ",
  503: "The server cannot extract clips now: ",
};

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
    let stream;
    try {
      stream = await startCamera($("try-camera"));
    } catch (err) {
      say($("try-message"), err.message, "error");
      return;
    }
    const seconds = Number($("record-seconds").value);
    const clip = await recordClip(stream, seconds, $("countdown"), (text) => {
      $("record-state").textContent = text;
    });
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
  const limit = page.info && page.info.serving.max_upload_bytes;
  if (limit && file.size > limit) {
    say(msg, `${file.name} is ${(file.size / 1048576).toFixed(1)} MiB; this server takes at most ${(limit / 1048576).toFixed(1)} MiB.`, "error");
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
    say(msg, (UPLOAD_ERRORS[err.status] || "") + err.message, "error");
    return;
  }
  await showResult(file, body);
}

// One prediction's answer: what the page shows of it.
async function showResult(file, body) {
  $("try-message").textContent = `${file.name}: top 5 of ${page.info ? page.info.model.num_classes : "?"} classes`;
  renderBars($("try-bars"), body.predictions[0].top_k);
  const t = body.timings;
  renderRows($("try-timings"), [
    ["decode", `${t.decode_ms.toFixed(0)} ms`], ["landmarks", `${t.landmarks_ms.toFixed(0)} ms`],
    ["encoder", `${t.encoder_ms.toFixed(0)} ms`], ["model", `${t.model_ms.toFixed(0)} ms`],
    ["upload", `${t.upload_ms.toFixed(0)} ms`], ["total", `${t.total_ms.toFixed(0)} ms`],
  ]);
  if (body.details) await renderFrames($("try-frames"), body.details);
}
