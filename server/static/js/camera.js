// The webcam, shared by every tab that shows it (one getUserMedia stream for the page),
// and recording a clip from it after a 3-2-1 countdown (the Try and Teach tabs).
import { sleep } from "./dom.js";

let shared = null; // the page's one camera stream, once started

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

// Show the camera in `video`, starting it the first time; an Error that says what to do
// when there is no camera.
export async function startCamera(video) {
  if (shared) {
    video.srcObject = shared;
    return shared;
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) throw new Error(cameraError(null));
  try {
    shared = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (err) {
    throw new Error(cameraError(err));
  }
  video.srcObject = shared;
  return shared;
}

function recorderType() {
  const types = ["video/webm;codecs=vp9", "video/webm;codecs=vp8", "video/webm", "video/mp4"];
  return types.find((t) => window.MediaRecorder && MediaRecorder.isTypeSupported(t)) || "";
}

// Count down 3, 2, 1 in `countdown`, record `seconds` of `stream`, and return the clip as
// a File; `onState` hears "recording (type)" and then "recorded N KiB".
export async function recordClip(stream, seconds, countdown, onState) {
  let recorder;
  const chunks = [];
  countdown.hidden = false;
  try {
    for (let n = 3; n > 0; n--) {
      countdown.textContent = String(n);
      await sleep(1000);
    }
    countdown.textContent = "recording";
    const type = recorderType();
    recorder = new MediaRecorder(stream, type ? { mimeType: type } : {});
    recorder.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
    const stopped = new Promise((r) => { recorder.onstop = r; });
    recorder.start();
    onState(`recording (${recorder.mimeType || "default type"})`);
    await sleep(1000 * seconds);
    recorder.stop();
    await stopped;
  } finally {
    countdown.hidden = true;
  }
  const mime = (recorder.mimeType || "video/webm").split(";")[0];
  const ext = mime.includes("mp4") ? "mp4" : "webm";
  onState(`recorded ${(chunks.reduce((n, c) => n + c.size, 0) / 1024).toFixed(0)} KiB`);
  return new File(chunks, `recording.${ext}`, { type: mime });
}

// The Record buttons' whole act: show the camera in `video` (starting it if need be),
// count down, record `seconds`; the clip as a File. Throws an Error that says what to do
// when there is no camera.
export async function recordFromCamera(video, seconds, countdown, onState) {
  const stream = await startCamera(video);
  return recordClip(stream, seconds, countdown, onState);
}
