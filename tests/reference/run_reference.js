// Runs the reference implementation, TensorFlow.js @tensorflow-models/body-pix 2.2.1, on a batch of
// images in one Node process (the model is loaded once), on weights from a local folder served on
// 127.0.0.1 (body-pix only takes a URL; nothing is downloaded).
//
// Usage:  node run_reference.js JOB.json
// JOB.json:
// {
//   "model_dir": "/abs/shared/models/bodypix/tfjs/mobilenet/quant2/075",
//   "graph": "model-stride16.json",
//   "architecture": "MobileNetV1", "multiplier": 0.75, "quant_bytes": 2, "output_stride": 16,
//   "backend": "cpu" | "wasm",
//   "mode": "single" | "multi",          // segmentPerson(+Parts) or segmentMultiPerson(+Parts)
//   "parts": true,                        // also run the *Parts variant (needs the cpu backend)
//   "probs": false,                       // also write the full-resolution person probability (float32)
//   "fix_dilations": false,               // serve the graph with symmetric dilations (see patchDilations)
//   "config": { "internalResolution": "medium", "segmentationThreshold": 0.7, ... },  // body-pix names
//   "warmup": 0, "repeat": 1,             // timing: untimed warm-up runs, timed runs (median reported)
//   "images": [ { "path": "img.npy|.png|.jpg", "out": "/abs/prefix" }, ... ]
// }
// Images in .npy form (uint8, HxWx3 or HxWx4, C order) let the caller hand over exactly the pixels its
// own decoder produced, so JPEG decoder differences never show up as model differences.
//
// Per image, files written next to "out" (all .npy open with numpy.load):
//   single: <out>.person.npy (uint8 0/1), <out>.parts.npy (int8 part id, -1 = background),
//           <out>.prob.npy (float32, optional), <out>.json (poses, timings, geometry)
//   multi:  <out>.person<k>.npy (uint8 0/1 per person), <out>.parts<k>.npy (int8 per person),
//           <out>.json (per-person poses, timings)
// A summary line of JSON per image goes to stdout.
'use strict';
const http = require('http');
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs-converter');
require('@tensorflow/tfjs-backend-cpu');
const bodyPix = require('@tensorflow-models/body-pix');
const bpUtil = require('@tensorflow-models/body-pix/dist/util');

// ---- images ---------------------------------------------------------------------------------------

function readNpy(buf) {
  // Minimal reader for the one layout we write ourselves: uint8, C order, 3-D.
  if (buf.toString('latin1', 1, 6) !== 'NUMPY') throw new Error('not an .npy file');
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const hstart = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', hstart, hstart + hlen);
  if (!/'descr':\s*'\|u1'/.test(header) || /'fortran_order':\s*True/.test(header)) {
    throw new Error('only uint8 C-order .npy images are supported: ' + header);
  }
  const shape = header.match(/'shape':\s*\(([^)]*)\)/)[1].split(',').filter(s => s.trim()).map(Number);
  if (shape.length !== 3 || (shape[2] !== 3 && shape[2] !== 4)) throw new Error('expected HxWx3|4, got ' + shape);
  return { height: shape[0], width: shape[1], channels: shape[2], data: buf.subarray(hstart + hlen) };
}

function loadImage(file) {
  const buf = fs.readFileSync(file);
  const lower = file.toLowerCase();
  let img;
  if (lower.endsWith('.npy')) {
    img = readNpy(buf);
  } else if (lower.endsWith('.png')) {
    const p = require('pngjs').PNG.sync.read(buf);
    img = { height: p.height, width: p.width, channels: 4, data: p.data };
  } else {
    const j = require('jpeg-js').decode(buf, { useTArray: true, maxMemoryUsageInMB: 4096 });
    img = { height: j.height, width: j.width, channels: 4, data: j.data };
  }
  const n = img.height * img.width;
  const rgb = new Int32Array(n * 3);
  for (let i = 0, s = 0, d = 0; i < n; i++, s += img.channels) {
    rgb[d++] = img.data[s]; rgb[d++] = img.data[s + 1]; rgb[d++] = img.data[s + 2];
  }
  // An int32 tensor is what tf.browser.fromPixels gives body-pix in a browser.
  return tf.tensor3d(rgb, [img.height, img.width, 3], 'int32');
}

// ---- outputs --------------------------------------------------------------------------------------

function writeNpy(file, typed, shape, descr) {
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const pre = Buffer.alloc(10);
  pre.write('\x93NUMPY', 0, 'latin1');
  pre[6] = 1; pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  const body = Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength);
  fs.writeFileSync(file, Buffer.concat([pre, Buffer.from(header, 'latin1'), body]));
}

function poseToJson(pose) {
  if (!pose) return null;
  return {
    score: pose.score,
    keypoints: pose.keypoints.map(k => ({ part: k.part, x: k.position.x, y: k.position.y, score: k.score })),
  };
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[(s.length - 1) >> 1] : null;
}

async function timed(fn, warmup, repeat) {
  for (let i = 0; i < warmup; i++) await fn();
  const times = [];
  let out;
  for (let i = 0; i < Math.max(1, repeat); i++) {
    const t0 = process.hrtime.bigint();
    out = await fn();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return { out, ms: median(times), all_ms: times };
}

// Full-resolution person probability, computed with body-pix's own helpers exactly as
// segmentPersonActivation does it, but without the threshold (for diagnosing mask differences).
function personProbability(net, input, internalResolution) {
  const [height, width] = input.shape;
  const res = bpUtil.toInputResolutionHeightAndWidth(internalResolution, net.baseModel.outputStride, [height, width]);
  const { resized, padding } = bpUtil.padAndResizeTo(input, res);
  const prob = tf.tidy(() => {
    const { segmentation } = net.baseModel.predict(resized);
    return tf.squeeze(bpUtil.scaleAndCropToInputTensorShape(segmentation, [height, width], resized.shape.slice(0, 2),
      [[padding.top, padding.bottom], [padding.left, padding.right]], true));
  });
  resized.dispose();
  return { prob, padding, input_size: res };
}

// The v1.2.6 converter wrote DepthwiseConv2dNative dilations as [d, d, 1, 1]; tfjs-converter reads
// elements [1:3], i.e. an asymmetric (d, 1) dilation, so the official runtime runs the stride-8
// graphs' dilated layers wrong (shared/models/bodypix/README.md, pitfall 2).  Our ONNX files restore
// (d, d).  Serving [1, d, d, 1] instead lets the unchanged body-pix code run the corrected network,
// which isolates that one difference in the faithfulness tests.
function patchDilations(graphJson) {
  const g = JSON.parse(graphJson);
  let n = 0;
  for (const node of g.modelTopology.node) {
    const dil = node.attr && node.attr.dilations && node.attr.dilations.list && node.attr.dilations.list.i;
    if (dil && dil.length === 4 && Number(dil[0]) > 1 && Number(dil[2]) === 1 && Number(dil[3]) === 1) {
      node.attr.dilations.list.i = ['1', dil[0], dil[1], '1'];
      n++;
    }
  }
  return { text: JSON.stringify(g), patched: n };
}

// ---- main -----------------------------------------------------------------------------------------

async function main() {
  const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  let patchedLayers = 0;
  const server = http.createServer((req, res) => {
    const rel = decodeURIComponent(req.url.split('?')[0]).replace(/^\/+/, '');
    const file = path.resolve(job.model_dir, rel);
    if (!file.startsWith(path.resolve(job.model_dir) + path.sep)) { res.statusCode = 403; res.end(); return; }
    fs.readFile(file, (err, data) => {
      if (err) { res.statusCode = 404; res.end(); return; }
      if (job.fix_dilations && rel === job.graph) {
        const p = patchDilations(data.toString('utf8'));
        patchedLayers = p.patched;
        data = p.text;
      }
      res.end(data);
    });
  });
  await new Promise(r => server.listen(0, '127.0.0.1', r));
  try {
    const backend = job.backend || 'cpu';
    if (backend === 'wasm') {
      const wasm = require('@tensorflow/tfjs-backend-wasm');
      wasm.setWasmPaths(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + '/');
      if (job.wasm_threads) wasm.setThreadsCount(job.wasm_threads);
    }
    if (!(await tf.setBackend(backend))) throw new Error('backend unavailable: ' + backend);
    await tf.ready();
    const t0 = process.hrtime.bigint();
    const net = await bodyPix.load({
      architecture: job.architecture || 'MobileNetV1',
      outputStride: job.output_stride,
      multiplier: job.architecture === 'ResNet50' ? 1.0 : job.multiplier,
      quantBytes: job.quant_bytes,
      modelUrl: `http://127.0.0.1:${server.address().port}/${job.graph}`,
    });
    const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const wasmFlags = backend !== 'wasm' ? null : {
      simd: await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'),
      multithread: await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT'),
    };
    const cfg = job.config || {};
    const warmup = job.warmup || 0, repeat = job.repeat || 1;
    for (const item of job.images) {
      const input = loadImage(item.path);
      const [h, w] = input.shape;
      const summary = { image: item.path, out: item.out, backend: tf.getBackend(), width: w, height: h,
        mode: job.mode || 'single', load_ms: loadMs, timings_ms: {} };
      const record = { ...summary, wasm: wasmFlags, config: cfg, dilation_layers_patched: patchedLayers, tfjs_version: tf.version_core, bodypix_version: bodyPix.version };
      if ((job.mode || 'single') === 'single') {
        const seg = await timed(() => net.segmentPerson(input, cfg), warmup, repeat);
        summary.timings_ms.segmentPerson = seg.ms;
        record.segmentPerson_all_ms = seg.all_ms;
        writeNpy(item.out + '.person.npy', Uint8Array.from(seg.out.data), [h, w], '|u1');
        record.allPoses = seg.out.allPoses.map(poseToJson);
        if (job.parts) {
          const parts = await timed(() => net.segmentPersonParts(input, cfg), 0, 1);
          summary.timings_ms.segmentPersonParts = parts.ms;
          writeNpy(item.out + '.parts.npy', Int8Array.from(parts.out.data), [h, w], '|i1');
          record.partsPoses = parts.out.allPoses.map(poseToJson);
        }
        if (job.probs) {
          const { prob, padding, input_size } = personProbability(net, input, cfg.internalResolution || 'medium');
          writeNpy(item.out + '.prob.npy', await prob.data(), [h, w], '<f4');
          prob.dispose();
          record.padding = padding;
          record.input_size = input_size;
        }
      } else {
        const seg = await timed(() => net.segmentMultiPerson(input, cfg), warmup, repeat);
        summary.timings_ms.segmentMultiPerson = seg.ms;
        record.people = seg.out.map((p, k) => {
          writeNpy(`${item.out}.person${k}.npy`, Uint8Array.from(p.data), [h, w], '|u1');
          return { pose: poseToJson(p.pose) };
        });
        if (job.parts) {
          const parts = await timed(() => net.segmentMultiPersonParts(input, cfg), 0, 1);
          summary.timings_ms.segmentMultiPersonParts = parts.ms;
          record.people_parts = parts.out.map((p, k) => {
            writeNpy(`${item.out}.parts${k}.npy`, Int8Array.from(p.data), [h, w], '|i1');
            return { pose: poseToJson(p.pose) };
          });
        }
      }
      input.dispose();
      record.timings_ms = summary.timings_ms;
      fs.writeFileSync(item.out + '.json', JSON.stringify(record));
      console.log(JSON.stringify(summary));
    }
  } finally {
    server.close();
  }
}

main().catch(e => { console.error(e && e.stack ? e.stack : e); process.exit(1); });
