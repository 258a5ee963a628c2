// Builds the component into build/ (committed, so `pip install -r requirements.txt` and `streamlit run`
// need no Node): main.js (the page's thread) and worker.js (the detector: src/detector.js and @litertjs/core),
// esbuild bundles; index.html; and LiteRT.js's
// WebAssembly runtime in wasm/ (the plain relaxed-SIMD build and the "compat" build for browsers without
// relaxed SIMD; LiteRT.js picks one by feature detection). The threaded build (needs cross-origin
// isolation, which Streamlit does not set) and the JSPI build (WebNN / WebGPU partitioning) are left out.
// Reproducible: `npm ci && npm run build` (versions pinned in package-lock.json).
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";

const out = "build";
rmSync(out, { recursive: true, force: true });
mkdirSync(`${out}/wasm`, { recursive: true });
const common = { bundle: true, target: "es2022", minify: true, legalComments: "eof" };
await build({ ...common, entryPoints: ["src/index.js"], format: "esm", outfile: `${out}/main.js` });
// a classic worker (LiteRT.js loads its WebAssembly glue with importScripts)
await build({ ...common, entryPoints: ["src/worker.js"], format: "iife", outfile: `${out}/worker.js` });
copyFileSync("src/index.html", `${out}/index.html`);
const wasm = "node_modules/@litertjs/core/wasm";
for (const name of ["litert_wasm_internal", "litert_wasm_compat_internal"]) {
  for (const ext of ["js", "wasm"]) copyFileSync(`${wasm}/${name}.${ext}`, `${out}/wasm/${name}.${ext}`);
}
console.log("built", out);
