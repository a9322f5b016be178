// ort_runner.js - times ONNX Runtime (npm onnxruntime-node) on one model and input for
// bench/run_bench.py. Usage: node ort_runner.js MODEL.onnx INPUT.f32 N,C,H,W THREADS RUNS WARMUP [OUT.f32]
// Prints one JSON line: {"median_ms", "min_ms", "max_ms", "rss_mb", "version"}. With OUT.f32, also
// writes the outputs of the last run there, float32, one after another in session.outputNames order
// (run_bench.py compares them with the port's).
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require(path.join(__dirname, 'node_env', 'node_modules', 'onnxruntime-node'));

async function main() {
  const [model, input, shapeText, threads, runs, warmup, outPath] = process.argv.slice(2);
  const shape = shapeText.split(',').map(Number);
  const buf = fs.readFileSync(input);
  const data = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: Number(threads), interOpNumThreads: 1,
    graphOptimizationLevel: 'all', executionMode: 'sequential',
  });
  const feeds = {[session.inputNames[0]]: new ort.Tensor('float32', data, shape)};
  for (let i = 0; i < Number(warmup); i++) await session.run(feeds);
  const times = [];
  let results = null;
  for (let i = 0; i < Number(runs); i++) {
    const t0 = process.hrtime.bigint();
    results = await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  if (outPath) {
    fs.writeFileSync(outPath, Buffer.concat(session.outputNames.map((n) => {
      const d = results[n].data;
      return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
    })));
  }
  times.sort((a, b) => a - b);
  const mid = times.length >> 1;
  const median = times.length % 2 ? times[mid] : 0.5 * (times[mid - 1] + times[mid]);
  const pkg = require(path.join(__dirname, 'node_env', 'node_modules', 'onnxruntime-node', 'package.json'));
  console.log(JSON.stringify({median_ms: median, min_ms: times[0], max_ms: times[times.length - 1],
                              rss_mb: peakRssMb(), version: pkg.version}));
}
// Peak RSS of this process image (VmHWM); maxRSS survives exec and would report the
// Python harness that started us.
function peakRssMb() {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : process.resourceUsage().maxRSS / 1024;
}
main().catch((e) => { console.error(String(e)); process.exit(1); });
