// Landmarks drawn on canvases: MediaPipe's skeleton edges per part, and the sampled
// frames of a prediction's details with what was found drawn over them.

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

// The parts of a landmark layout ({parts, sizes}) with where each starts in a frame.
export function parts(layout) {
  const out = [];
  let offset = 0;
  layout.parts.forEach((name, i) => {
    out.push({ name, index: i, offset, size: layout.sizes[i] });
    offset += layout.sizes[i];
  });
  return out;
}

// Draw one frame's landmarks (points (K, 3), x and y in 0..1) on a canvas context.
export function drawLandmarks(ctx, layout, points, mask, w, h, fit) {
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

// One box for a whole clip (found points only), so the figure moves, not the frame: a
// function placing a point on a `size` square canvas with `pad` around; null when nothing
// was found in any frame.
export function fitClip(layout, frames, mask, size, pad) {
  let lo = [Infinity, Infinity], hi = [-Infinity, -Infinity];
  frames.forEach((pts, t) => parts(layout).forEach((part) => {
    if (!mask[t][part.index]) return;
    for (const p of pts.slice(part.offset, part.offset + part.size)) {
      lo = [Math.min(lo[0], p[0]), Math.min(lo[1], p[1])];
      hi = [Math.max(hi[0], p[0]), Math.max(hi[1], p[1])];
    }
  }));
  if (!Number.isFinite(lo[0])) return null;
  const span = Math.max(hi[0] - lo[0], hi[1] - lo[1], 1e-6);
  const inner = size - 2 * pad;
  return (p) => [pad + ((p[0] - lo[0]) / span) * inner, pad + ((p[1] - lo[1]) / span) * inner];
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("frame image did not load"));
    img.src = src;
  });
}

// Fill `box` with one captioned canvas per sampled frame of a prediction's `details`
// (frames as data URLs, frame_times, and landmarks, landmark_mask and layout when found).
export async function renderFrames(box, details) {
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
