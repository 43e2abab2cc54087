// The "Teach" tab: record takes of a gloss from the camera (POST /v1/videos, each shown
// with its sampled frames and landmarks, flagged when no hands were found), the glosses
// with their takes per split (GET /v1/glosses; a gloss opened lists its takes, each with
// a delete button), and training (POST /v1/train, followed epoch by epoch, then the
// per-class accuracy and the confusion matrix). Needs a server with --allow-writes.
import { ApiError, api, postJson } from "./api.js";
import { recordFromCamera, startCamera } from "./camera.js";
import { $, headerRow, say, sleep } from "./dom.js";
import { drawLandmarks, fitClip, renderFrames } from "./landmarks.js";
import { renderConfusion, renderPerClass } from "./model.js";

const POLL_MS = 500;
const WRITE_BUTTONS = ["teach-record", "teach-train"];

let page; // main.js's shared state: page.info is the server's /v1/info
let following = null; // the training job this tab follows

export function setup(shared) {
  page = shared;
  $("teach-record").addEventListener("click", () => recordTakes().catch(showFailure));
  $("teach-train").addEventListener("click", () => train().catch(showTrainFailure));
  $("teach-cancel").addEventListener("click", () => cancel().catch(showTrainFailure));
}

export async function open() {
  startCamera($("teach-camera")).catch((err) => say($("teach-message"), err.message, "error"));
  await refreshGlosses();
  const running = page.info && page.info.teach.running_job;
  if (running && !following) await follow(running);
}

// Writes on or off: off, the tab says how to turn them on and its buttons do nothing.
export function showInfo(info) {
  const t = info.teach;
  const off = $("teach-off");
  off.hidden = t.allow_writes;
  off.textContent = t.allow_writes ? "" : `${t.writes}. Start the server as: asl-serve --store ${info.store.url} --allow-writes`;
  for (const id of WRITE_BUTTONS) $(id).disabled = !t.allow_writes || (id === "teach-train" && !t.training);
  if (t.allow_writes && !t.training) say($("teach-train-state"), "This server cannot run training jobs on its store (a memory:// store, or give --runs DIR).", "error");
  $("teach-gloss").maxLength = t.max_gloss_chars;
  $("teach-epochs").placeholder = String(t.train_defaults.epochs);
}

function showFailure(err) { say($("teach-message"), err.message || String(err), "error"); }

function showTrainFailure(err) { say($("teach-train-state"), err.message || String(err), "error"); }

// Record the chosen number of takes of the gloss, each after the countdown, each stored
// and shown before the next one starts; the first failure stops the run.
async function recordTakes() {
  const gloss = $("teach-gloss").value.trim();
  if (!gloss) {
    say($("teach-message"), "Type the gloss (the sign's name) first.", "error");
    return;
  }
  const n = Math.max(1, Number($("teach-takes").value) || 1);
  const seconds = Number($("teach-seconds").value);
  const button = $("teach-record");
  button.disabled = true;
  $("teach-new").textContent = "";
  try {
    for (let i = 1; i <= n; i++) {
      say($("teach-message"), `take ${i} of ${n} of "${gloss}": get ready`);
      const clip = await recordFromCamera($("teach-camera"), seconds, $("teach-countdown"),
        (text) => { $("teach-state").textContent = `take ${i}/${n}: ${text}`; });
      say($("teach-message"), `take ${i} of ${n}: extracting and storing ...`);
      const box = pendingTake(clip, i);
      let take;
      try {
        take = await addTake(clip, gloss);
      } catch (err) {
        box.remove();
        throw err;
      }
      await showTake(box, take, i);
      await refreshGlosses();
    }
    say($("teach-message"), `${n} take${n > 1 ? "s" : ""} of "${gloss}" stored.`);
  } finally {
    button.disabled = !page.info.teach.allow_writes;
  }
}

function addTake(clip, gloss) {
  const form = new FormData();
  form.append("file", clip, clip.name);
  form.append("gloss", gloss);
  form.append("details", "true");
  return api("/v1/videos", { method: "POST", body: form });
}

// A take as recorded, playing while the server extracts and stores it.
function pendingTake(clip, i) {
  const box = document.createElement("div");
  box.className = "take";
  const head = document.createElement("h3");
  head.textContent = `take ${i}: storing ...`;
  const video = document.createElement("video");
  video.className = "take-preview";
  Object.assign(video, { src: URL.createObjectURL(clip), muted: true, autoplay: true, loop: true });
  box.append(head, video);
  $("teach-new").appendChild(box);
  return box;
}

// The take once stored: its id and split, a warning when hands were missing, its sampled
// frames with the landmarks found, and a button that deletes it.
async function showTake(box, take, i) {
  box.dataset.videoId = take.video_id;
  const head = box.querySelector("h3");
  head.textContent = `take ${i}: ${take.video_id} (${take.split}) `;
  const discard = document.createElement("button");
  discard.className = "delete";
  discard.textContent = "×";
  discard.title = "delete this take";
  discard.addEventListener("click", () => deleteNewTake(box, take.video_id).catch(showFailure));
  head.appendChild(discard);
  const missing = take.frames_without_hands;
  if (missing) {
    const warn = document.createElement("div");
    warn.className = "warning";
    warn.textContent = missing === take.frames
      ? `No hands found in any of the ${take.frames} frames: is the signer in view and lit?`
      : `No hands in ${missing} of ${take.frames} frames.`;
    box.appendChild(warn);
  }
  const frames = document.createElement("div");
  frames.className = "frames";
  box.appendChild(frames);
  if (take.details) await renderFrames(frames, take.details);
}

async function deleteNewTake(box, videoId) {
  await api(`/v1/videos/${encodeURIComponent(videoId)}`, { method: "DELETE" });
  box.remove();
  say($("teach-message"), `take ${videoId} deleted.`);
  await refreshGlosses();
}

// The glosses table (and the gloss input's suggestions), from GET /v1/glosses.
async function refreshGlosses() {
  const body = await api("/v1/glosses");
  const splits = [...new Set(body.glosses.flatMap((g) => Object.keys(g.takes)))].sort();
  const table = $("teach-glosses");
  table.textContent = "";
  headerRow(table, [...splits, "total", "in the model"]).cells[0].textContent = "gloss";
  const list = $("teach-gloss-list");
  list.textContent = "";
  for (const g of body.glosses) {
    list.appendChild(new Option(g.gloss));
    const tr = table.insertRow();
    tr.dataset.gloss = g.gloss;
    for (const c of [g.gloss, ...splits.map((s) => g.takes[s] || 0), g.total, g.in_model ? "yes" : "no"]) {
      tr.insertCell().textContent = c;
    }
    tr.addEventListener("click", () => openGloss(g.gloss).catch(showFailure));
  }
  $("teach-total").textContent = body.glosses.length
    ? `${body.total} takes of ${body.glosses.length} glosses` : "No takes yet.";
}

// One gloss's takes as skeleton thumbnails, each with a delete button.
async function openGloss(gloss) {
  const body = await api(`/v1/videos?${new URLSearchParams({ gloss, limit: "1000" })}`);
  $("teach-gloss-view").hidden = false;
  $("teach-gloss-title").textContent = `${gloss}: ${body.total} takes`;
  const box = $("teach-gloss-takes");
  box.textContent = "";
  for (const v of body.items) {
    const fig = document.createElement("figure");
    fig.dataset.videoId = v.video_id;
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = 96;
    const del = document.createElement("button");
    del.className = "delete";
    del.title = `delete ${v.video_id}`;
    del.textContent = "×";
    del.disabled = !page.info.teach.allow_writes;
    del.addEventListener("click", () => deleteTake(v.video_id, fig).catch(showFailure));
    const caption = document.createElement("figcaption");
    caption.textContent = `${v.split} · ${v.video_id}`;
    fig.append(canvas, del, caption);
    box.appendChild(fig);
    drawThumbnail(canvas, v.video_id).catch(() => {}); // no landmarks: a blank thumbnail
  }
}

// The take's middle frame as a skeleton (stored takes keep landmarks, not pictures).
async function drawThumbnail(canvas, videoId) {
  const base = `/v1/videos/${encodeURIComponent(videoId)}/features`;
  const [points, mask] = await Promise.all([api(`${base}/landmarks`), api(`${base}/landmark_mask`)]);
  const layout = page.info.store.landmark_layout;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#111827";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const fit = fitClip(layout, points.data, mask.data, canvas.width, 6);
  const t = Math.floor(points.data.length / 2);
  if (fit) drawLandmarks(ctx, layout, points.data[t], mask.data[t], 0, 0, fit);
}

async function deleteTake(videoId, fig) {
  await api(`/v1/videos/${encodeURIComponent(videoId)}`, { method: "DELETE" });
  fig.remove();
  await refreshGlosses();
}

async function train() {
  const body = {};
  const epochs = Number($("teach-epochs").value);
  if (epochs > 0) body.epochs = epochs;
  let started;
  try {
    started = await postJson("/v1/train", body);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 409 && err.body && err.body.job_id)) throw err;
    started = err.body; // one is running already: follow that one
  }
  await follow(started.job_id);
}

// Poll the job until it ends: the progress bar per epoch, val accuracy as it comes.
async function follow(jobId) {
  following = jobId;
  $("teach-train").disabled = true;
  $("teach-cancel").hidden = false;
  $("teach-result").hidden = true;
  const bar = $("teach-progress");
  bar.hidden = false;
  bar.value = 0;
  try {
    for (;;) {
      const job = await api(`/v1/train/${encodeURIComponent(jobId)}`);
      showProgress(job);
      if (["done", "failed", "cancelled"].includes(job.state)) {
        await finish(job);
        return;
      }
      await sleep(POLL_MS);
    }
  } finally {
    following = null;
    $("teach-cancel").hidden = true;
    $("teach-train").disabled = !(page.info.teach.allow_writes && page.info.teach.training);
  }
}

function showProgress(job) {
  const bar = $("teach-progress");
  bar.max = job.epochs || 1;
  bar.value = job.state === "done" ? bar.max : job.epoch;
  bar.dataset.state = job.state;
  const last = job.metrics[job.metrics.length - 1] || {};
  const pct = (x) => `${(100 * x).toFixed(1)}%`;
  const parts = [`job ${job.job_id}: ${job.state}`, `epoch ${job.epoch}/${job.epochs || "?"}`];
  if (last.train_top1 != null) parts.push(`train top-1 ${pct(last.train_top1)}`);
  if (last.val_top1 != null) parts.push(`val top-1 ${pct(last.val_top1)}`);
  say($("teach-train-state"), parts.join(" · "));
}

async function finish(job) {
  if (job.state === "failed") {
    say($("teach-train-state"), `Training failed: ${job.error || "no reason given"}. The served model is as it was.`, "error");
    return;
  }
  if (job.state === "cancelled") {
    say($("teach-train-state"), "Training cancelled: the served model is as it was.", "error");
    return;
  }
  await page.reload(); // the new model: its classes, for the Try, Live and Model tabs
  await refreshGlosses();
  await showReport(job);
}

// Per-class accuracy and the confusion matrix: on the val takes (the job's report), or,
// with none yet, on the train takes, saying so.
async function showReport(job) {
  let report = job.report;
  let where = report ? `on the ${report.count} val takes: top-1 ${(100 * report.top1).toFixed(1)}%` : "";
  if (!report) {
    report = await scoreTrainTakes();
    where = `on the ${report.count} train takes the model learnt from (no val takes yet: the 5th, 10th, ... take of a gloss goes to val): top-1 ${(100 * report.top1).toFixed(1)}%`;
  }
  $("teach-report-message").textContent = `The new model is served. Scored ${where}.`;
  renderPerClass($("teach-per-class"), report.per_class);
  const names = Object.keys(report.labels).sort((a, b) => a - b).map((k) => report.labels[k]);
  renderConfusion($("teach-confusion"), names, report.confusion);
  $("teach-result").hidden = false;
}

// The served model on the stored train takes, tallied as a report is.
async function scoreTrainTakes() {
  const list = await api("/v1/videos?split=train&limit=1000");
  const items = list.items.filter((v) => v.label >= 0).slice(0, page.info.serving.max_predict_ids);
  const body = await postJson("/v1/predict", { video_ids: items.map((v) => v.video_id), top_k: 1 });
  const labels = { ...page.info.store.labels };
  const index = Object.keys(labels).map(Number).sort((a, b) => a - b);
  const confusion = index.map(() => index.map(() => 0));
  const perClass = {};
  let right = 0;
  body.predictions.forEach((p, i) => {
    const truth = items[i].label;
    const guess = p.top_k[0].label;
    if (index.includes(guess)) confusion[index.indexOf(truth)][index.indexOf(guess)] += 1;
    const c = (perClass[labels[truth]] = perClass[labels[truth]] || { accuracy: 0, count: 0, right: 0 });
    c.count += 1;
    c.right += truth === guess ? 1 : 0;
    c.accuracy = c.right / c.count;
    right += truth === guess ? 1 : 0;
  });
  return { labels, confusion, per_class: perClass, count: items.length, top1: right / (items.length || 1) };
}

async function cancel() {
  if (following) await api(`/v1/train/${encodeURIComponent(following)}`, { method: "DELETE" });
}
