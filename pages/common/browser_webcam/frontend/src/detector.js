// What facecore does around a BlazeFace network, ported to the browser so that the in-browser webcam
// draws the same boxes as the server on the same frame:
//   - facecore/blazeface/builtin.py: letterbox (facecore.preprocess.area_resize, mid-grey border, [-1, 1]), SSD anchor
//     decoding, MediaPipe's weighted NMS, the box style (keypoint map) in the letterboxed square;
//   - facecore/blazeface/saved.py: a trained model's frame padded to its training aspect, resized whole
//     (facecore/preprocess.resize_for_model, values 0..255), every anchor decoded in the graph, weighted NMS.
// The anchors, the style matrix and the scores' floor come from facecore (facecore/live/browser.py): nothing
// here is a second copy of a number Python decides.
import { Tensor } from "@litertjs/core";

// Python's round() and OpenCV's cvRound: halves go to the even neighbour.
export function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

const f32 = Math.fround;

// -- resizing as OpenCV does (cv::resize on uint8 RGB) ---------------------------------------------------
// cv::computeResizeAreaTab: which source pixels (and how much of each) make one output pixel.
function areaTab(ssize, dsize) {
  const scale = 1 / (dsize / ssize);
  const di = [], si = [], alpha = [];
  for (let dx = 0; dx < dsize; dx++) {
    const fsx1 = dx * scale, fsx2 = fsx1 + scale;
    const cell = Math.min(scale, ssize - fsx1);
    let sx1 = Math.ceil(fsx1), sx2 = Math.floor(fsx2);
    sx2 = Math.min(sx2, ssize - 1);
    sx1 = Math.min(sx1, sx2);
    if (sx1 - fsx1 > 1e-3) { di.push(dx); si.push(sx1 - 1); alpha.push(f32((sx1 - fsx1) / cell)); }
    for (let sx = sx1; sx < sx2; sx++) { di.push(dx); si.push(sx); alpha.push(f32(1 / cell)); }
    if (fsx2 - sx2 > 1e-3) { di.push(dx); si.push(sx2); alpha.push(f32(Math.min(Math.min(fsx2 - sx2, 1), cell) / cell)); }
  }
  return { di: Int32Array.from(di), si: Int32Array.from(si), alpha: Float32Array.from(alpha) };
}

// INTER_AREA shrinking (both axes): float32 sums as OpenCV's ResizeArea_Invoker<uchar, float>,
// or the integer-factor path (ResizeAreaFast) when both factors are whole numbers.
function resizeArea(src, sw, sh, stride, dw, dh) {
  const out = new Uint8Array(dw * dh * 3);
  const ix = sw / dw, iy = sh / dh;
  if (Number.isInteger(ix) && Number.isInteger(iy)) {
    const area = ix * iy, scale = f32(1 / area);
    for (let y = 0; y < dh; y++) {
      for (let x = 0; x < dw; x++) {
        for (let c = 0; c < 3; c++) {
          let sum = 0;
          for (let j = 0; j < iy; j++) {
            const row = ((y * iy + j) * sw + x * ix) * stride + c;
            for (let i = 0; i < ix; i++) sum += src[row + i * stride];
          }
          out[(y * dw + x) * 3 + c] = ix === 2 && iy === 2 ? (sum + 2) >> 2 : roundHalfEven(f32(sum * scale));
        }
      }
    }
    return out;
  }
  const xt = areaTab(sw, dw), yt = areaTab(sh, dh);
  const buf = new Float32Array(dw * 3), sum = new Float32Array(dw * 3);
  let prev = -1;
  const flush = (dy) => {
    for (let k = 0; k < dw * 3; k++) out[dy * dw * 3 + k] = Math.min(255, Math.max(0, roundHalfEven(sum[k])));
  };
  for (let j = 0; j < yt.di.length; j++) {
    const beta = yt.alpha[j], dy = yt.di[j], row = yt.si[j] * sw * stride;
    buf.fill(0);
    for (let k = 0; k < xt.di.length; k++) {
      const d = xt.di[k] * 3, s = row + xt.si[k] * stride, a = xt.alpha[k];
      buf[d] = buf[d] + f32(src[s] * a);
      buf[d + 1] = buf[d + 1] + f32(src[s + 1] * a);
      buf[d + 2] = buf[d + 2] + f32(src[s + 2] * a);
    }
    if (dy !== prev) {
      if (prev >= 0) flush(prev);
      for (let k = 0; k < dw * 3; k++) sum[k] = f32(beta * buf[k]);
      prev = dy;
    } else {
      for (let k = 0; k < dw * 3; k++) sum[k] = sum[k] + f32(beta * buf[k]);
    }
  }
  if (prev >= 0) flush(prev);
  return out;
}

// OpenCV's bilinear coefficients along one axis (INTER_LINEAR, or INTER_AREA's enlarging mode), as
// 11-bit fixed point like its uint8 path.
function linearTab(ssize, dsize, areaMode) {
  const scale = 1 / (dsize / ssize), inv = dsize / ssize;
  const i0 = new Int32Array(dsize), i1 = new Int32Array(dsize), w0 = new Int32Array(dsize), w1 = new Int32Array(dsize);
  for (let d = 0; d < dsize; d++) {
    let s, f;
    if (!areaMode) { f = f32((d + 0.5) * scale - 0.5); s = Math.floor(f); f = f32(f - s); } else {
      s = Math.floor(d * scale);
      f = f32((d + 1) - (s + 1) * inv);
      f = f <= 0 ? 0 : f32(f - Math.floor(f));
    }
    if (s < 0) { f = 0; s = 0; }
    if (s >= ssize - 1) { f = 0; s = ssize - 1; }
    i0[d] = s; i1[d] = Math.min(s + 1, ssize - 1);
    w0[d] = roundHalfEven(f32(1 - f) * 2048); w1[d] = roundHalfEven(f * 2048);
  }
  return { i0, i1, w0, w1 };
}

function resizeLinear(src, sw, sh, stride, dw, dh, areaMode) {
  const out = new Uint8Array(dw * dh * 3);
  const xt = linearTab(sw, dw, areaMode), yt = linearTab(sh, dh, areaMode);
  const rows = [new Int32Array(dw * 3), new Int32Array(dw * 3)];
  const hrow = (sy, buf) => {
    const base = sy * sw * stride;
    for (let x = 0; x < dw; x++) {
      const a = base + xt.i0[x] * stride, b = base + xt.i1[x] * stride;
      for (let c = 0; c < 3; c++) buf[x * 3 + c] = src[a + c] * xt.w0[x] + src[b + c] * xt.w1[x];
    }
  };
  for (let y = 0; y < dh; y++) {
    hrow(yt.i0[y], rows[0]);
    hrow(yt.i1[y], rows[1]);
    const b0 = yt.w0[y], b1 = yt.w1[y];
    for (let k = 0; k < dw * 3; k++) {
      const v = (((b0 * (rows[0][k] >> 4)) >> 16) + ((b1 * (rows[1][k] >> 4)) >> 16) + 2) >> 2;
      out[y * dw * 3 + k] = Math.min(255, Math.max(0, v));
    }
  }
  return out;
}

// cv2.resize(rgb, (dw, dh), interpolation) for an RGBA (stride 4) or RGB (stride 3) uint8 source.
export function resize(src, sw, sh, stride, dw, dh, area) {
  if (area && sw >= dw && sh >= dh) return resizeArea(src, sw, sh, stride, dw, dh);
  return resizeLinear(src, sw, sh, stride, dw, dh, area);
}

// facecore.preprocess.area_resize: averaged down by the largest whole factor that divides both sides (OpenCV's
// fast INTER_AREA path), the rest bilinear under 2x (INTER_AREA beyond); INTER_LINEAR when enlarging.
export function areaResize(src, sw, sh, stride, dw, dh) {
  if (dw >= sw && dh >= sh) return resize(src, sw, sh, stride, dw, dh, false);
  let k = Math.floor(Math.min(sw / dw, sh / dh));
  while (k >= 2 && (sw % k || sh % k)) k--;
  if (k >= 2) {
    src = resize(src, sw, sh, stride, sw / k, sh / k, true);
    sw /= k; sh /= k; stride = 3;
  }
  return resize(src, sw, sh, stride, dw, dh, !(sw < 2 * dw && sh < 2 * dh));
}

// facecore.blazeface.builtin.letterbox: the frame centred in the square, scaled to [-1, 1] on a 0 (mid-grey) border.
export function letterbox(rgba, w, h, size) {
  const scale = size / Math.max(h, w);
  const nw = Math.max(1, roundHalfEven(w * scale)), nh = Math.max(1, roundHalfEven(h * scale));
  const small = areaResize(rgba, w, h, 4, nw, nh);
  const out = new Float32Array(size * size * 3);
  const x0 = Math.floor((size - nw) / 2), y0 = Math.floor((size - nh) / 2);
  for (let y = 0; y < nh; y++) {
    for (let x = 0; x < nw; x++) {
      const s = (y * nw + x) * 3, d = ((y0 + y) * size + x0 + x) * 3;
      for (let c = 0; c < 3; c++) out[d + c] = f32(f32(small[s + c] / 127.5) - 1);
    }
  }
  return { input: out, geom: [nw / size, nh / size, x0 / size, y0 / size] };
}

// facecore.blazeface.saved.pad_to_aspect: mid-grey (127) padding, centred, to width / height = aspect.
export function padToAspect(rgba, w, h, aspect) {
  const none = { rgba, w, h, geom: [1, 1, 0, 0] };
  if (typeof aspect !== "number" || !Number.isFinite(aspect)) return none;
  if (!(aspect >= 0.2 && aspect <= 5.0) || Math.abs(w / h / aspect - 1.0) <= 0.02) return none;
  const pw = Math.max(w, roundHalfEven(h * aspect)), ph = Math.max(h, roundHalfEven(w / aspect));
  const x0 = Math.floor((pw - w) / 2), y0 = Math.floor((ph - h) / 2);
  const out = new Uint8ClampedArray(pw * ph * 4).fill(127);
  for (let y = 0; y < h; y++) out.set(rgba.subarray(y * w * 4, (y + 1) * w * 4), ((y0 + y) * pw + x0) * 4);
  return { rgba: out, w: pw, h: ph, geom: [w / pw, h / ph, x0 / pw, y0 / ph] };
}

// facecore.preprocess.resize_for_model (area_resize) after pad_to_aspect: the whole (padded) frame, values 0..255.
export function resizeForModel(rgba, w, h, size, aspect) {
  const p = padToAspect(rgba, w, h, aspect);
  const small = areaResize(p.rgba, p.w, p.h, 4, size, size);
  return { input: Float32Array.from(small), geom: p.geom };
}

// -- after the network -------------------------------------------------------------------------------
export function iou(a, ai, b, bi) {
  const ix1 = Math.max(a[ai], b[bi]), iy1 = Math.max(a[ai + 1], b[bi + 1]);
  const ix2 = Math.min(a[ai + 2], b[bi + 2]), iy2 = Math.min(a[ai + 3], b[bi + 3]);
  const inter = Math.max(ix2 - ix1, 0) * Math.max(iy2 - iy1, 0);
  const area = (r, i) => Math.max(r[i + 2] - r[i], 0) * Math.max(r[i + 3] - r[i + 1], 0);
  const union = area(a, ai) + area(b, bi) - inter;
  return union > 0 ? inter / union : 0;
}

// facecore.blazeface.builtin.weighted_nms over rows of `cols` numbers (4 box corners, then anything averaged
// along: keypoints): [{score, row}], best first. Only members scoring at least min(averageFloor, the best
// member's score) are averaged; every overlapping one is suppressed.
export function weightedNms(rows, cols, scores, minScore, iouThreshold, maxFaces = 20, maxCandidates = 128,
                            averageFloor = 0) {
  let keep = [];
  for (let i = 0; i < scores.length; i++) if (scores[i] >= minScore) keep.push(i);
  if (!keep.length) return [];
  keep.sort((a, b) => scores[b] - scores[a]); // stable, as numpy's kind="stable"
  keep = keep.slice(0, maxCandidates);
  const n = keep.length, cand = new Float64Array(n * cols), cs = new Float64Array(n);
  keep.forEach((k, i) => { cand.set(rows.subarray(k * cols, (k + 1) * cols), i * cols); cs[i] = scores[k]; });
  const alive = new Uint8Array(n).fill(1), out = [];
  for (let i = 0; i < n; i++) {
    if (!alive[i]) continue;
    const acc = new Float64Array(cols);
    let wsum = 0;
    for (let j = 0; j < n; j++) {
      if (!(j === i || (alive[j] && iou(cand, i * cols, cand, j * cols) > iouThreshold))) continue;
      alive[j] = 0;
      if (cs[j] < Math.min(averageFloor, cs[i])) continue;
      for (let c = 0; c < cols; c++) acc[c] += cand[j * cols + c] * cs[j];
      wsum += cs[j];
    }
    out.push({ score: cs[i], row: acc.map((v) => v / wsum) });
    if (out.length >= maxFaces) break;
  }
  return out;
}

const clip01 = (v) => Math.min(1, Math.max(0, v));

// facecore.blazeface.boxstyle.BoxStyle.apply with a (14, 4) weights matrix: box (4) and 6 keypoints (12) in the
// letterboxed square -> the style's box, clipped.
export function applyStyle(row, W) {
  const [x1, y1, x2, y2] = row;
  const cx = (x1 + x2) / 2, cy = (y1 + y2) / 2;
  const f = [x2 - x1, y2 - y1];
  for (let k = 0; k < 6; k++) f.push(row[4 + 2 * k] - cx, row[5 + 2 * k] - cy);
  const c = [cx, cy, cx, cy];
  return c.map((v, j) => clip01(v + f.reduce((s, fv, i) => s + fv * W[i][j], 0)));
}

// Raw SSD outputs -> rows [x1, y1, x2, y2, k0x, k0y, ...] (A, 16) in the square, and face probabilities.
export function decodeSsd(reg, logits, anchors, size) {
  const A = anchors.length / 2, rows = new Float64Array(A * 16), scores = new Float64Array(A);
  for (let a = 0; a < A; a++) {
    const r = a * 16, ax = anchors[2 * a], ay = anchors[2 * a + 1];
    const cx = reg[r] / size + ax, cy = reg[r + 1] / size + ay, w = reg[r + 2] / size, h = reg[r + 3] / size;
    rows[r] = cx - w / 2; rows[r + 1] = cy - h / 2; rows[r + 2] = cx + w / 2; rows[r + 3] = cy + h / 2;
    for (let k = 4; k < 16; k += 2) { rows[r + k] = reg[r + k] / size + ax; rows[r + k + 1] = reg[r + k + 1] / size + ay; }
    const z = Math.min(100, Math.max(-100, logits[a]));
    scores[a] = 0.5 * (1 + Math.tanh(z / 2));
  }
  return { rows, scores };
}

function outputsBy(outs) {
  // tell outputs apart by shape, as facecore does (the interpreter's output order is not fixed)
  const by = {};
  for (const t of outs) {
    const dims = Array.from(t.type.layout.dimensions);
    by[`${dims.length}:${dims[dims.length - 1]}`] = t;
  }
  return by;
}

// One model and its decoding (`spec` from facecore.live.browser.BrowserDetector.spec).
export class BrowserDetector {
  constructor(model, spec) {
    this.model = model;
    this.spec = spec;
    const shape = Array.from(model.getInputDetails()[0].shape);
    this.height = shape[1];
    this.width = shape[2];
    this.anchors = spec.anchors ? Float64Array.from(spec.anchors.flat()) : null;
  }

  // RGBA uint8 frame (w x h) -> faces [{score, box: [x1, y1, x2, y2] normalized to the frame}], best first.
  async detect(rgba, w, h) {
    const s = this.spec, t0 = performance.now();
    const prep = s.kind === "ssd" ? letterbox(rgba, w, h, this.width) : resizeForModel(rgba, w, h, this.width, s.frame_aspect);
    const input = new Tensor(prep.input, [1, this.height, this.width, 3]);
    const t1 = performance.now();
    let outs;
    try {
      outs = await this.model.run(input);
    } finally {
      input.delete();
    }
    const t2 = performance.now();
    try {
      const by = outputsBy(outs);
      return s.kind === "ssd" ? this.ssdFaces(by, prep.geom) : this.anchorFaces(by, prep.geom);
    } finally {
      outs.forEach((t) => t.delete());
      this.timing = { prepMs: t1 - t0, networkMs: t2 - t1, decodeMs: performance.now() - t2 }; // for profiling
    }
  }

  ssdFaces(by, [sx, sy, ox, oy]) {
    const s = this.spec;
    const { rows, scores } = decodeSsd(by["3:16"].toTypedArray(), by["3:1"].toTypedArray(), this.anchors, this.width);
    const faces = [];
    for (const { score, row } of weightedNms(rows, 16, scores, s.min_score, s.nms_iou)) {
      const b = applyStyle(row, s.style);
      const box = [clip01((b[0] - ox) / sx), clip01((b[1] - oy) / sy), clip01((b[2] - ox) / sx), clip01((b[3] - oy) / sy)];
      if (box[2] > box[0] && box[3] > box[1]) faces.push({ score, box });
    }
    return faces;
  }

  anchorFaces(by, [sx, sy, ox, oy]) {
    const s = this.spec;
    const probs = by["3:1"].toTypedArray(), boxes = by["3:4"].toTypedArray();
    const faces = [];
    for (const { score, row } of weightedNms(Float64Array.from(boxes), 4, probs, s.min_score, s.nms_iou, 20, 128,
                                                     s.average_floor || 0)) {
      const b = [(row[0] - ox) / sx, (row[1] - oy) / sy, (row[2] - ox) / sx, (row[3] - oy) / sy];
      const box = [clip01(Math.min(b[0], b[2])), clip01(Math.min(b[1], b[3])), clip01(Math.max(b[0], b[2])), clip01(Math.max(b[1], b[3]))];
      if (box[2] > box[0] && box[3] > box[1] && Number.isFinite(score)) faces.push({ score, box });
    }
    return faces;
  }
}
