// The "Live" tab: camera frames as JPEGs over the /v1/stream WebSocket, at the chosen
// rate; each prediction message drawn as it comes (top 5, hands seen, counters), and each
// sign the server's spotter finds added to a running transcript under the bars.
import { showKeyError, socketUrl } from "./api.js";
import { startCamera } from "./camera.js";
import { $, renderBars, say } from "./dom.js";

let live = null; // the session: {ws, timer, stream}

export function setup() {
  $("live-start").addEventListener("click", () => start());
  $("live-stop").addEventListener("click", stop);
}

export async function open() {
  try {
    await startCamera($("live-camera"));
  } catch (err) {
    say($("live-state"), err.message, "error");
  }
}

async function start() {
  const info = $("live-state");
  let stream;
  try {
    stream = await startCamera($("live-camera"));
  } catch (err) {
    say(info, err.message, "error");
    return;
  }
  const video = $("live-camera");
  const fps = Number($("live-fps").value);
  const ws = new WebSocket(socketUrl("/v1/stream", { top_k: "5", fps: String(fps) }));
  const canvas = document.createElement("canvas");
  const session = { ws, timer: null, stream };
  live = session;
  $("live-start").disabled = true;
  $("live-stop").disabled = false;
  say(info, "connecting ...");
  clearTranscript();
  ws.onmessage = (event) => {
    const m = JSON.parse(event.data);
    if (m.type === "ready") {
      info.textContent = `live: windows of ${m.window_frames.join(", ")} frames at ${m.fps} frames/s, a prediction every ${m.every}`;
      session.timer = setInterval(() => sendFrame(ws, video, canvas), 1000 / fps);
    } else if (m.type === "prediction") {
      showPrediction(m);
    } else if (m.type === "segment") {
      addSign(m);
    } else if (m.type === "pause") {
      endLine();
    } else if (m.type === "error") {
      say(info, m.detail, "error");
      if (/API key/.test(m.detail)) showKeyError(m.detail);
    }
  };
  ws.onclose = (event) => {
    clearInterval(session.timer);
    $("live-start").disabled = false;
    $("live-stop").disabled = true;
    if (event.code !== 1000 && event.code !== 1005) {
      say(info, `stream closed (${event.code}): ${event.reason || "connection lost"}`, "error");
    } else if (info.className !== "error") {
      info.textContent = "stopped";
    }
  };
}

// One "prediction" message: bars, the hands seen, and the stream's counters.
function showPrediction(m) {
  renderBars($("live-bars"), m.top_k);
  const hands = $("live-hands");
  hands.textContent = "";
  for (const [part, on] of Object.entries(m.hands || {})) {
    const tag = document.createElement("span");
    tag.className = on ? "on" : "";
    tag.textContent = `${part.replace("_", " ")} ${on ? "seen" : "not seen"}`;
    hands.appendChild(tag);
  }
  const stats = $("live-stats");
  stats.textContent = `frame ${m.frame} · window ${m.window} frames · sent ${m.received} · processed ${m.processed} · dropped ${m.dropped} · ${m.latency_ms.toFixed(0)} ms`;
  stats.dataset.predictions = String(Number(stats.dataset.predictions || 0) + 1);
}

// The transcript: one line per stretch of signing (a pause ends it), one word per sign.
function clearTranscript() {
  const box = $("live-transcript");
  box.textContent = "";
  box.dataset.segments = "0";
}

function addSign(m) {
  const box = $("live-transcript");
  let line = box.lastElementChild;
  if (!line || line.dataset.ended) {
    line = document.createElement("div");
    line.className = "line";
    box.appendChild(line);
  }
  for (const w of box.querySelectorAll(".word.new")) w.classList.remove("new");
  const word = document.createElement("span");
  word.className = "word new";
  word.textContent = m.gloss;
  word.title = `${m.start_s.toFixed(1)}-${m.end_s.toFixed(1)} s, ${(100 * m.score).toFixed(0)}%`;
  line.appendChild(word);
  box.dataset.segments = String(Number(box.dataset.segments || 0) + 1);
  while (box.children.length > 50) box.firstElementChild.remove();
  box.scrollTop = box.scrollHeight;
}

function endLine() {
  const line = $("live-transcript").lastElementChild;
  if (line) line.dataset.ended = "1";
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

function stop() {
  if (live) live.ws.close(1000, "stopped by the user");
}
