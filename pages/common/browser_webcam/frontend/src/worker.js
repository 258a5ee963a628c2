// The detector's own thread: LiteRT.js (WebAssembly) runs the model here, so the page's thread only
// draws the camera's frames and never waits for the network. A classic worker: LiteRT.js loads its
// WebAssembly glue with importScripts.
import { loadLiteRt, loadAndCompile } from "@litertjs/core";
import { BrowserDetector } from "./detector.js";

let runtime = null, detector = null, loadedId = null;

async function load({ id, bytes, spec, wasm }) {
  if (!runtime) {
    // the .wasm beside its glue script (in a worker, Emscripten would look beside worker.js)
    self.Module = { locateFile: (file) => new URL(file, wasm).href };
    runtime = loadLiteRt(wasm);
  }
  await runtime;
  const model = await loadAndCompile(new Uint8Array(bytes), { accelerator: "wasm" });
  const next = new BrowserDetector(model, spec);
  await next.detect(new Uint8ClampedArray(next.width * next.height * 4), next.width, next.height); // warm up
  if (detector) detector.model.delete();
  detector = next;
  loadedId = id;
}

self.onmessage = async ({ data }) => {
  if (data.type === "load") {
    try {
      await load(data);
      self.postMessage({ type: "loaded", id: data.id });
    } catch (err) {
      self.postMessage({ type: "error", id: data.id, message: String(err?.message || err) });
    }
    return;
  }
  if (data.type === "detect") {
    const reply = { type: "faces", seq: data.seq, model: loadedId, faces: [], ms: null, timing: null };
    try {
      if (detector) {
        const t0 = performance.now();
        reply.faces = await detector.detect(new Uint8ClampedArray(data.buffer), data.w, data.h);
        reply.ms = performance.now() - t0;
        reply.timing = detector.timing;
      }
    } catch (err) {
      reply.error = String(err?.message || err);
    }
    reply.buffer = data.buffer; // the pixels' memory goes back for the next frame
    self.postMessage(reply, [data.buffer]);
  }
};
