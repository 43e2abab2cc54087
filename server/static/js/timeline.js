// The signs found in a recording (POST /v1/spot's answer) on a time axis: one block per
// segment at its place, its gloss on it; clicking a block plays the video from there, and
// a cursor follows the video. Overlapping segments go on lanes below one another.

const pct = (x) => `${(100 * Math.min(1, Math.max(0, x))).toFixed(3)}%`;

// Seconds between two ticks: about eight ticks over `seconds`.
function tickStep(seconds) {
  const steps = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600];
  return steps.find((s) => seconds / s <= 10) || 1200;
}

function clock(t) {
  const m = Math.floor(t / 60);
  const s = t - 60 * m;
  return m ? `${m}:${s.toFixed(0).padStart(2, "0")}` : `${s.toFixed(s % 1 ? 1 : 0)} s`;
}

// The first lane whose last block ends before `start` (a new lane if none).
function lane(ends, start) {
  const i = ends.findIndex((end) => end <= start);
  return i >= 0 ? i : ends.length;
}

// Draw `doc` ({fps, frames, segments}) into `el`; `video` (optional) is the recording.
export function renderTimeline(el, doc, video) {
  el.textContent = "";
  const seconds = Math.max(doc.frames / doc.fps, 0.001);
  const track = document.createElement("div");
  track.className = "track";
  const ends = [];
  const blocks = doc.segments.map((s) => {
    const row = lane(ends, s.start_s);
    ends[row] = s.end_s;
    const block = document.createElement("button");
    block.className = "segment";
    block.style.left = pct(s.start_s / seconds);
    block.style.width = pct((s.end_s - s.start_s) / seconds);
    block.style.top = `${row * 2}em`;
    block.textContent = s.gloss;
    block.dataset.start = String(s.start_s);
    const others = s.top_k.slice(1, 4).map((c) => `${c.gloss} ${(100 * c.score).toFixed(0)}%`);
    block.title = `${s.gloss} ${(100 * s.score).toFixed(0)}%, ${s.start_s.toFixed(2)}-${s.end_s.toFixed(2)} s`
      + (others.length ? `; then ${others.join(", ")}` : "");
    block.addEventListener("click", () => {
      if (!video) return;
      video.currentTime = s.start_s;
      video.play().catch(() => {});
    });
    track.appendChild(block);
    return [block, s];
  });
  track.style.height = `${Math.max(1, ends.length) * 2}em`;
  const cursor = document.createElement("div");
  cursor.className = "cursor";
  track.appendChild(cursor);
  const axis = document.createElement("div");
  axis.className = "axis";
  const step = tickStep(seconds);
  for (let t = 0; t <= seconds + 1e-6; t += step) {
    const tick = document.createElement("span");
    tick.style.left = pct(t / seconds);
    tick.textContent = clock(t);
    axis.appendChild(tick);
  }
  el.append(track, axis);
  if (video) {
    video.ontimeupdate = () => {
      const t = video.currentTime;
      cursor.style.left = pct(t / seconds);
      for (const [block, s] of blocks) block.classList.toggle("now", s.start_s <= t && t < s.end_s);
    };
  }
}
