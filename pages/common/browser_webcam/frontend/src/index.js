// FaceTrack Studio's in-browser webcam: a Streamlit component (the v1 iframe protocol, spoken directly)
// that runs the chosen detector's .tflite next to the camera with LiteRT.js and draws boxes, blur and
// an fps line itself. No video goes to the server: the page gets a frame only when the user saves a
// snapshot (through the component's value).
//
// Two threads: this one draws every camera frame with the newest boxes; the detector runs in a worker
// (worker.js) on the newest frame whenever it is free, so a slow model lowers the detection rate, never
// the frame rate, and the page (which shares this thread) stays responsive.

const WINDOW_S = 3; // rates over the last 3 s, as facecore.live.pacing.WINDOW_S
const LOG_MAX = 600;
const BOX_COLOR = "rgb(255, 0, 0)"; // facecore.detect.BOX_COLOR

const $ = (id) => document.getElementById(id);
const video = $("video"), view = $("view"), ctx = view.getContext("2d");
const grab = document.createElement("canvas"), grabCtx = grab.getContext("2d", { willReadFrequently: true });

let args = {};
let loadedId = null, loadingId = null, loadError = null, detectorName = "";
let stream = null, frameCb = null;
let value = { model: null, need: null, snapshot: null, error: null };
let snapshots = 0;
const stats = { drawn: [], camera: [], detections: [], latency: [], frames: 0, skipped: 0, last: null };
const smooth = { prev: [] };
let raw = []; // the newest detections (all scores), as the worker returned them
let shownFaces = []; // after threshold and smoothing: what each drawn frame shows

// -- Streamlit's component protocol --------------------------------------------------------------------
function send(type, data) {
  window.parent.postMessage({ isStreamlitMessage: true, type, ...data }, "*");
}
function setValue(patch) {
  value = { ...value, ...patch };
  send("streamlit:setComponentValue", { value, dataType: "json" });
}
function fitHeight() {
  send("streamlit:setFrameHeight", { height: Math.ceil(document.documentElement.scrollHeight) });
}
new ResizeObserver(fitHeight).observe(document.body);

window.addEventListener("message", (event) => {
  if (event.data?.type !== "streamlit:render") return;
  args = event.data.args || {};
  onRender();
});

function onRender() {
  $("snapshot").disabled = !args.can_save || !stream;
  $("snapshot").textContent = args.can_save ? `Save snapshot to ${args.dataset}` : "Save snapshot";
  if (!value.snapshot || args.save_note) $("savenote").textContent = args.save_note || "";
  if (typeof args.threshold !== "number") args.threshold = 0.5;
  updateShown(); // the next frame drawn uses the new threshold and smoothing
  if (args.model_id && args.model_id !== loadedId && args.model_id !== loadingId) {
    if (args.model) loadModel(args.model_id, args.model, args.spec);
    else setValue({ model: loadedId, need: args.model_id }); // e.g. a reloaded frame: ask for the file again
  }
  renderStatus();
  fitHeight();
}

// -- the detector's worker -----------------------------------------------------------------------------
const worker = new Worker(new URL("worker.js", window.location.href));
let busy = false, seq = 0, spare = null;
const waiting = new Map(); // seq -> resolve, for __facetrack.detect

worker.onmessage = ({ data }) => {
  if (data.type === "loaded" || data.type === "error") return onLoaded(data);
  if (data.type !== "faces") return;
  const resolve = waiting.get(data.seq);
  if (resolve) { waiting.delete(data.seq); return resolve(data); }
  spare = data.buffer;
  busy = false;
  onFaces(data);
};

function loadModel(id, bytes, spec) {
  loadingId = id;
  loadError = null;
  const copy = (bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)).slice();
  // the WASM files are the component's own static files, served by the app (nothing from a CDN)
  worker.postMessage({ type: "load", id, bytes: copy.buffer, spec, wasm: new URL("wasm/", window.location.href).href }, [copy.buffer]);
  window.__facetrack.specs[id] = spec;
  renderStatus();
}

function onLoaded({ type, id, message }) {
  if (id !== loadingId) return;
  loadingId = null;
  if (type === "error") {
    loadError = `${window.__facetrack.specs[id]?.name || "The detector"} could not be loaded in the browser: ${message}`;
    setValue({ model: loadedId, need: null, error: loadError });
  } else {
    loadedId = id;
    detectorName = window.__facetrack.specs[id]?.name || "";
    raw = [];
    smooth.prev = [];
    stats.latency = [];
    setValue({ model: id, need: null, error: null });
  }
  renderStatus();
}

// the newest camera frame to the worker, when it is free
function detectFrame(now) {
  const w = video.videoWidth, h = video.videoHeight;
  if (!w || !h || !loadedId) return;
  if (grab.width !== w || grab.height !== h) { grab.width = w; grab.height = h; }
  grabCtx.drawImage(video, 0, 0, w, h);
  const frame = grabCtx.getImageData(0, 0, w, h);
  if (window.__facetrackOnFrame) window.__facetrackOnFrame(frame, seq + 1); // test instrumentation
  let buffer = spare && spare.byteLength === frame.data.byteLength ? spare : new ArrayBuffer(frame.data.byteLength);
  new Uint8ClampedArray(buffer).set(frame.data);
  spare = null;
  busy = true;
  worker.postMessage({ type: "detect", seq: ++seq, buffer, w, h, t: now }, [buffer]);
}

function onFaces(data) {
  const t = performance.now();
  if (data.error) $("camerr").textContent = `The detector failed on the last frame: ${data.error}`;
  if (data.model !== loadedId) return; // a frame of the model before
  raw = data.faces;
  if (data.ms !== null) {
    push(stats.detections, t);
    stats.latency.push([t, data.ms]);
    while (stats.latency[0][0] < t - WINDOW_S * 1000) stats.latency.shift();
  }
  updateShown();
  const log = window.__facetrack.log;
  log.push({ t: Date.now() / 1000, seq: data.seq, ms: data.ms, timing: data.timing, faces: raw, shown: shownFaces.map((f) => f.box), detector: detectorName });
  if (log.length > LOG_MAX) log.shift();
}

function updateShown() {
  shownFaces = smoothed(raw.filter((f) => f.score >= args.threshold), args.smoothing ?? 0.6);
}

// -- the camera ----------------------------------------------------------------------------------------
const CAMERA_ERRORS = {
  NotAllowedError: "Camera access was denied: allow the camera for this site in the browser's address bar, then press Start again.",
  NotFoundError: "No camera found: connect one, close apps that use it, and press Start again.",
  NotReadableError: "The camera is in use by another app or tab: close it and press Start again.",
};

async function start() {
  $("camerr").textContent = "";
  if (!navigator.mediaDevices?.getUserMedia) {
    $("camerr").textContent = "The camera is not available here: open the app on https:// or on localhost.";
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } }, audio: false,
    });
  } catch (err) {
    $("camerr").textContent = CAMERA_ERRORS[err.name] || `The camera could not start (${err.name}: ${err.message}).`;
    return;
  }
  video.srcObject = stream;
  await video.play();
  Object.assign(stats, { drawn: [], camera: [], detections: [], latency: [], frames: 0, skipped: 0, last: null });
  smooth.prev = [];
  frameCb = video.requestVideoFrameCallback(onFrame);
  $("start").hidden = true;
  $("stop").hidden = false;
  onRender();
}

function stop() {
  if (frameCb !== null) video.cancelVideoFrameCallback(frameCb);
  frameCb = null;
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
  video.srcObject = null;
  $("start").hidden = false;
  $("stop").hidden = true;
  onRender();
}

// -- one frame: detect, smooth, draw -------------------------------------------------------------------
function push(list, t) {
  list.push(t);
  while (list.length && list[0] < t - WINDOW_S * 1000) list.shift();
}
function rate(list) {
  return list.length >= 2 && list[list.length - 1] > list[0] ? (list.length - 1) * 1000 / (list[list.length - 1] - list[0]) : 0;
}

// facecore.smoothing.BoxSmoother: each face's box a moving average of its matched earlier boxes
function smoothed(faces, alpha, minIou = 0.3) {
  if (!faces.length) { smooth.prev = []; return []; }
  const prev = smooth.prev, taken = new Set();
  const out = faces.map((f) => {
    let box = f.box;
    if (alpha > 0 && prev.length) {
      const order = prev.map((p, j) => [iouOf(f.box, p), j]).sort((a, b) => b[0] - a[0]);
      for (const [o, j] of order) {
        if (o < minIou) break;
        if (!taken.has(j)) { taken.add(j); box = box.map((v, k) => alpha * prev[j][k] + (1 - alpha) * v); break; }
      }
    }
    return { ...f, box };
  });
  smooth.prev = out.map((f) => f.box);
  return out;
}
function iouOf(a, b) {
  const iw = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0])), ih = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih;
  return u > 0 ? (iw * ih) / u : 0;
}

// every new camera frame: drawn at once with the newest boxes; sent to the worker if it is free
function onFrame(now) {
  frameCb = video.requestVideoFrameCallback(onFrame);
  push(stats.camera, now);
  const w = video.videoWidth, h = video.videoHeight;
  if (!w || !h) return;
  if (busy) stats.skipped++; // detected later on a newer frame: never queued
  else detectFrame(now);
  if (view.width !== w || view.height !== h) { view.width = w; view.height = h; }
  draw(w, h, shownFaces.filter((f) => f.score >= args.threshold), args);
  const t = performance.now();
  push(stats.drawn, t);
  stats.frames++;
  const lat = stats.latency;
  stats.last = {
    t, fps: rate(stats.drawn), cameraFps: rate(stats.camera), detectFps: rate(stats.detections),
    faces: shownFaces.filter((f) => f.score >= args.threshold).length, probability: raw.length ? raw[0].score : 0,
    latencyMs: lat.length ? lat.reduce((sum, [, m]) => sum + m, 0) / lat.length : 0, detector: detectorName,
  };
}

function overlayText(s) {
  return `${s.fps.toFixed(1)} fps | ${s.latencyMs.toFixed(0)} ms | ${s.detector || "no detector"}`;
}

function draw(w, h, faces, a) {
  ctx.drawImage(video, 0, 0, w, h);
  const thick = Math.max(1, Math.round(Math.min(h, w) / 240));
  for (const f of faces) {
    const x1 = Math.round(f.box[0] * w), y1 = Math.round(f.box[1] * h), x2 = Math.round(f.box[2] * w), y2 = Math.round(f.box[3] * h);
    if (x2 <= x1 || y2 <= y1) continue;
    if (a.blur) {
      // OpenCV's Gaussian for facecore.detect.draw_detections' kernel: k = max(3, (min side / 3) | 1)
      const k = Math.max(3, Math.floor(Math.min(x2 - x1, y2 - y1) / 3) | 1);
      const sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8;
      ctx.save();
      ctx.beginPath();
      ctx.rect(x1, y1, x2 - x1, y2 - y1);
      ctx.clip();
      ctx.filter = `blur(${sigma.toFixed(1)}px)`;
      ctx.drawImage(video, 0, 0, w, h);
      ctx.restore();
      continue;
    }
    ctx.strokeStyle = BOX_COLOR;
    ctx.lineWidth = thick;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = `face ${f.score.toFixed(2)}`;
    ctx.font = `${12 * thick}px sans-serif`;
    const tw = ctx.measureText(text).width, th = 12 * thick + 4;
    const ty = y1 - th >= 0 ? y1 - th : y1;
    ctx.fillStyle = BOX_COLOR;
    ctx.fillRect(x1, ty, tw + 6, th);
    ctx.fillStyle = "white";
    ctx.fillText(text, x1 + 3, ty + th - 4);
  }
  if (a.overlay !== false && stats.last) {
    const text = overlayText(stats.last);
    const size = Math.max(12, Math.round(h / 30));
    ctx.font = `${size}px sans-serif`;
    ctx.fillStyle = "black";
    ctx.fillRect(0, 0, ctx.measureText(text).width + 10, size + 8);
    ctx.fillStyle = "white";
    ctx.fillText(text, 5, size + 2);
  }
}

// -- stats beside the video (in the browser: the server is not asked for anything) ----------------------
function renderStatus() {
  const model = loadingId ? `Loading ${args.detector || "the detector"} into the browser...`
    : loadError || (loadedId ? `Detector ${detectorName} runs in this browser (LiteRT.js, WebAssembly, its own thread).` : "Waiting for the detector...");
  $("model").textContent = model;
  $("model").className = loadError ? "error" : "";
}

function renderStats() {
  const s = stats.last;
  const el = $("stats");
  $("nostats").hidden = Boolean(stream || s);
  if (!stream) { el.hidden = !s; if (s) $("found").textContent = "Camera stopped: these are the last stats."; return; }
  el.hidden = false;
  if (!s) { $("found").textContent = "Waiting for the first frames..."; return; }
  $("found").textContent = s.faces ? `Face found — detector ${s.detector}` : `No face — detector ${s.detector || "none"}`;
  $("prob").textContent = s.probability.toFixed(2);
  $("faces").textContent = String(s.faces);
  $("fps").textContent = s.fps.toFixed(1);
  $("latency").textContent = `${s.latencyMs.toFixed(0)} ms`;
  $("line").textContent = overlayText(s);
  $("more").textContent = `${stats.frames} frames drawn this stream; the model ran ${s.detectFps.toFixed(1)} times a second; `
    + `the camera sends ${s.cameraFps.toFixed(1)} fps; ${stats.skipped} frames drawn with the boxes of an earlier one (the model was busy).`;
}
setInterval(renderStats, 1000);

// -- snapshot: the one time a frame goes to the server --------------------------------------------------
async function snapshot() {
  if (!stream || !grab.width) return;
  const blob = await new Promise((resolve) => grab.toBlob(resolve, "image/jpeg", 0.92));
  const b64 = await new Promise((resolve) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).split(",", 2)[1]);
    r.readAsDataURL(blob);
  });
  snapshots++;
  setValue({ snapshot: { n: snapshots, t: Date.now(), jpeg: b64 } });
  $("savenote").textContent = "Saving the snapshot...";
}

$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
$("snapshot").addEventListener("click", snapshot);

// Tests and debugging: run the loaded detector (in its worker, the camera's code path) on any RGBA pixels.
window.__facetrack = {
  log: [],
  specs: {},
  get modelId() { return loadedId; },
  get ready() { return loadedId !== null && loadingId === null; },
  get stats() { return stats.last; },
  detect: (rgba, w, h) => new Promise((resolve) => {
    const id = ++seq, buffer = Uint8ClampedArray.from(rgba).buffer;
    waiting.set(id, resolve);
    worker.postMessage({ type: "detect", seq: id, buffer, w, h }, [buffer]);
  }),
};

send("streamlit:componentReady", { apiVersion: 1 });
