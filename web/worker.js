// The Web Worker that runs the model, so the page never freezes. Messages in:
//   {type: 'load', gpu, forceGpu, maxBuffer, helper, threads}  fetch (or take from the cache)
//                                    and load the model; on the CPU, the threaded engine
//                                    where the page is cross-origin isolated, with a pool of
//                                    `threads` workers (0: one per core, where there are
//                                    several; false: none), else (with `helper` not false and
//                                    more than one core) a second worker (see below)
//   {type: 'generate', request}      text to video
//   {type: 'animate', image, request} image to video
//   {type: 'clips'}                  fetch (or take from the cache) and load the real-video
//                                    autoencoder that decomposes and transfers clips
//   {type: 'decompose', frames}      content and motion of a clip
//   {type: 'transfer', a, b}         content of a, motion of b
// Messages out: {type: 'download', loaded, total}, {type: 'ready', backend, width, height,
// frames}, {type: 'progress', stage, done, total, gpu}, {type: 'result', panels, gpu} (for
// 'clips': {type: 'result', size: {width, height, frames, autoencoder}}), {type: 'error',
// message}. `gpu` is null, or with 'load''s `count` the WebGPU calls made so far.
// Cancelling is terminating this worker (its second worker goes with it).
//
// Two builds of the engine. `threads/cmd-web.js` shares its memory with a pool of Web Workers
// (one per core) that split every operation on the CPU, as the native CLI's threads do; shared
// memory needs a cross-origin isolated page (served with `Cross-Origin-Opener-Policy:
// same-origin` and `Cross-Origin-Embedder-Policy: require-corp`, see web/README.md), and that
// build has no WebGPU (wgpu's browser types are not thread-safe). `cmd-web.js` is one thread,
// with WebGPU: it serves GPUs, and the CPU where the page is not isolated.
//
// The second worker: in the one-thread engine, a guided sampler step needs the network twice
// (the null condition and the prompt). A second copy of this worker loads the same model and
// computes the null rows of every guided step while this one computes the conditional rows;
// the clips are the same. Its messages: in {type: 'helper', files, wasm}, then {type: 'null',
// id, call}; out {type: 'ready'}, {type: 'null', id, values} or {type: 'error', id, message};
// `wasm` is the compiled engine (a WebAssembly.Module).

// The teaching model, loaded at once, and the real-video autoencoder, loaded when a clip is
// first decomposed or transferred; each cached on its own.
const TEACHING = { folder: 'teaching/', cache: 'cmd-teaching-model', files: ['model.json',
  'tokenizer.json', 'autoencoder.safetensors', 'text_encoder.safetensors', 'unet.safetensors',
  'dit.safetensors'], what: 'model' };
const REAL = { folder: 'real/', cache: 'cmd-real-autoencoder',
  files: ['model.json', 'autoencoder.safetensors'], what: 'real-video autoencoder' };

let studio = null;

// The engine's module (its `Studio`), once started.
let engine = null;

// The one-thread engine's compiled WebAssembly, kept to hand to the second worker: one
// compilation for both, and the second worker starts with the optimised code this one's runs
// have made.
let wasm = null;

// Starts the one-thread engine (from `module` when given).
async function start(module) {
  if (!module) {
    const url = new URL('./cmd-web_bg.wasm', import.meta.url);
    module = await WebAssembly.compileStreaming(fetch(url))
      .catch(async () => WebAssembly.compile(await (await fetch(url)).arrayBuffer()));
  }
  wasm = module;
  engine = await import('./cmd-web.js');
  await engine.default({ module_or_path: module });
}

// Starts the threaded engine with a pool of `threads` workers; resolves to false (nothing
// started) where the page is not cross-origin isolated, the site has no threaded build, or the
// browser cannot start it (its shared memory or workers refused): the one-thread engine then
// runs instead.
async function startThreaded(threads) {
  if (!self.crossOriginIsolated || typeof SharedArrayBuffer !== 'function') return false;
  try {
    const threaded = await import('./threads/cmd-web.js');
    await threaded.default();
    await threaded.initThreadPool(threads);
    engine = threaded;
    return true;
  } catch (e) {
    console.warn(`the threaded engine did not start, using one thread: ${e && e.message || e}`);
    return false;
  }
}

// Starts the second worker on the model's `files`; resolves to its `ask(call)` (a promise of
// the null prediction), or null when it cannot start (the page then uses one worker).
function startHelper(files) {
  return new Promise((resolve) => {
    let helper;
    try {
      helper = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    } catch (e) {
      resolve(null);
      return;
    }
    const pending = new Map();
    let next = 0;
    let stopped = null;
    const ask = (call) => new Promise((ok, fail) => {
      if (stopped) { fail(stopped); return; }
      const id = next++;
      pending.set(id, { ok, fail });
      helper.postMessage({ type: 'null', id, call }, [call.x.buffer]);
    });
    helper.onmessage = ({ data }) => {
      if (data.type === 'ready') { resolve(ask); return; }
      const waiting = pending.get(data.id);
      if (data.id === undefined || !waiting) { resolve(null); helper.terminate(); return; }
      pending.delete(data.id);
      if (data.type === 'null') waiting.ok(data.values);
      else waiting.fail(new Error(data.message));
    };
    helper.onerror = (e) => {
      resolve(null);
      stopped = new Error(e.message || 'the second worker stopped');
      for (const { fail } of pending.values()) fail(stopped);
      pending.clear();
    };
    helper.postMessage({ type: 'helper', files, wasm });
  });
}

// WebGPU calls made so far, counted when 'load' asks (`?bench=1`): compute dispatches, queue
// submissions and read-backs (buffers mapped for reading, each a wait on the GPU). Counted
// at the API, so they are what the browser's GPU process sees, whatever burn does inside.
// `kernels` counts the dispatches per kernel family (see `kernelFamily`).
let gpuCalls = null;

// A compute pipeline's kernel family: cubecl labels each pipeline with its kernel's name,
// types and a hash (`kernel_binop_c_f32_n_4_12e1994d`), and the family drops the last two
// (`kernel_binop`). The WGSL kernels of shaders/ are all labelled `main` (burn's source-kernel
// entry point): they count together as `shaders`.
function kernelFamily(label) {
  if (label === 'main') return 'shaders';
  return (label || 'unnamed').replace(/_[0-9a-f]{8}$/, '').replace(/(_[a-z]+)?_[fiu]\d+(_.*)?$/, '');
}

function countGpuCalls() {
  if (gpuCalls || !self.GPUComputePassEncoder) return;
  gpuCalls = { dispatches: 0, submits: 0, readbacks: 0, kernels: {} };
  const wrap = (proto, name, counts) => {
    const call = proto[name];
    proto[name] = function (...args) {
      const key = counts(args, this);
      if (key) gpuCalls[key] += 1;
      return call.apply(this, args);
    };
  };
  const pass = GPUComputePassEncoder.prototype;
  const dispatched = (_, encoder) => {
    const family = encoder.cmdKernel || 'unnamed';
    gpuCalls.kernels[family] = (gpuCalls.kernels[family] || 0) + 1;
    return 'dispatches';
  };
  wrap(pass, 'setPipeline', ([pipeline], encoder) => {
    // Named once per pipeline, not on every use.
    encoder.cmdKernel = pipeline.cmdKernel ??= kernelFamily(pipeline.label);
    return null;
  });
  wrap(pass, 'dispatchWorkgroups', dispatched);
  wrap(pass, 'dispatchWorkgroupsIndirect', dispatched);
  wrap(GPUQueue.prototype, 'submit', () => 'submits');
  wrap(GPUBuffer.prototype, 'mapAsync', ([mode]) => (mode & GPUMapMode.READ ? 'readbacks' : null));
}

function gpuCounts() {
  return gpuCalls && { ...gpuCalls, kernels: { ...gpuCalls.kernels } };
}

// A model's files: from the Cache Storage when they are there and model.json is unchanged,
// else fetched (with progress) and cached for the next visit.
async function modelFiles({ folder: MODEL, cache: CACHE, files: FILES, what }) {
  const cache = 'caches' in self ? await caches.open(CACHE) : null;
  const fresh = await fetch(MODEL + 'model.json', { cache: 'no-cache' });
  if (!fresh.ok) throw new Error(`${MODEL}model.json: HTTP ${fresh.status}`);
  const config = new Uint8Array(await fresh.arrayBuffer());
  if (cache) {
    const cached = await cache.match(MODEL + 'model.json');
    const same = cached && equal(new Uint8Array(await cached.arrayBuffer()), config);
    if (!same) {
      for (const key of await cache.keys()) await cache.delete(key);
      await cache.put(MODEL + 'model.json', new Response(config));
    }
  }
  const files = new Map([['model.json', config]]);
  const rest = FILES.slice(1);
  const responses = [];
  for (const name of rest) {
    const hit = cache && await cache.match(MODEL + name);
    responses.push([name, hit || await fetch(MODEL + name), !hit]);
  }
  for (const [name, response] of responses) {
    if (!response.ok) throw new Error(`${MODEL}${name}: HTTP ${response.status}`);
  }
  const total = responses.reduce((sum, [, r]) => sum + Number(r.headers.get('content-length') || 0), 0);
  let loaded = 0;
  for (const [name, response, fetched] of responses) {
    const chunks = [];
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      loaded += value.length;
      postMessage({ type: 'download', loaded, total, what });
    }
    const bytes = concat(chunks);
    if (cache && fetched) await cache.put(MODEL + name, new Response(bytes));
    files.set(name, bytes);
  }
  return files;
}

// The largest buffer the adapter allows (the smaller of its maxBufferSize and
// maxStorageBufferBindingSize); 0 when unknown.
function largestBuffer(adapter) {
  if (!adapter) return 0;
  return Math.min(adapter.limits.maxBufferSize, adapter.limits.maxStorageBufferBindingSize);
}

function equal(a, b) {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function concat(chunks) {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.length; }
  return out;
}

function progress(stage, done, total) {
  postMessage({ type: 'progress', stage, done, total, gpu: gpuCounts() });
}

// A result as plain data (transferable buffers).
function plain(panels) {
  const sized = (bytes) => {
    const view = new DataView(bytes.buffer, bytes.byteOffset, 8);
    return { width: view.getUint32(0, true), height: view.getUint32(4, true), rgba: bytes.slice(8) };
  };
  const out = {
    frames: panels.frames, width: panels.width, height: panels.height,
    clip: panels.clip(), contentOnly: panels.contentOnly(), content: panels.content(),
    weights: sized(panels.weights()), motion: sized(panels.motion()), gif: panels.gif(),
    psnr: panels.psnr, truncated: panels.truncated,
  };
  panels.free();
  return out;
}

self.onmessage = async ({ data }) => {
  try {
    if (data.type === 'helper') {
      await start(data.wasm);
      studio = await engine.Studio.load(data.files, false, 0);
      // Else the first shared steps run on baseline code (see warmUp).
      studio.warmUp(3);
      postMessage({ type: 'ready' });
      return;
    }
    if (data.type === 'null') {
      try {
        const values = studio.nullPrediction(data.call);
        postMessage({ type: 'null', id: data.id, values }, [values.buffer]);
      } catch (e) {
        postMessage({ type: 'error', id: data.id, message: String(e && e.message || e) });
      }
      return;
    }
    if (data.type === 'load') {
      if (data.count) countGpuCalls();
      const adapter = data.gpu && navigator.gpu ? await navigator.gpu.requestAdapter() : null;
      // A software adapter (SwiftShader, where the browser has no usable GPU) is far slower
      // than the CPU path: use the CPU unless the page insists.
      const software = adapter && adapter.info && adapter.info.isFallbackAdapter && !data.forceGpu;
      const gpu = data.gpu && !software;
      const cores = navigator.hardwareConcurrency || 1;
      // The threaded engine wherever the model runs on the CPU (it has no WebGPU).
      const pool = data.threads === false ? 0 : data.threads || (cores > 1 ? cores : 0);
      const threads = !(gpu && adapter) && pool > 0 && await startThreaded(pool);
      if (!threads) await start();
      const files = await modelFiles(TEACHING);
      // Without WebGPU the second worker loads while this one does.
      const wantHelper = !threads && data.helper !== false && cores > 1;
      let helper = wantHelper && !gpu ? startHelper(files) : null;
      studio = await engine.Studio.load(files, gpu && !threads, data.maxBuffer || largestBuffer(adapter));
      if (wantHelper && !helper && studio.backend.startsWith('CPU')) helper = startHelper(files);
      const ask = helper && await helper;
      const shared = ask && studio.setHelper(ask);
      let backend = studio.backend;
      if (threads) {
        backend = backend.replace('CPU (WebAssembly)', `CPU (WebAssembly, ${pool} threads)`);
        if (gpu) backend += ': no WebGPU adapter';
      }
      if (shared) backend = backend.replace('CPU (WebAssembly', 'CPU (WebAssembly, 2 workers');
      if (software) {
        backend = `${backend}: this browser's WebGPU runs in software, slower than the CPU here (add ?gpu=1 to the address to use it anyway)`;
      }
      postMessage({ type: 'ready', backend, width: studio.width, height: studio.height,
        frames: studio.frames });
      return;
    }
    if (data.type === 'clips') {
      const files = await modelFiles(REAL);
      studio.loadClipAutoencoder(files);
      // The frame rate it was trained at (model.json's `fps`) is the one to sample clips at.
      const { fps } = JSON.parse(new TextDecoder().decode(files.get('model.json')));
      postMessage({ type: 'result', kind: data.type, size: { ...studio.clipSize(), fps: fps || 8 } });
      return;
    }
    const r = data.request;
    let panels;
    if (data.type === 'generate') {
      panels = await studio.generate(r.prompt, r.seed, r.steps, r.motionSteps, r.guidance,
        r.motionGuidance, progress);
    } else if (data.type === 'animate') {
      panels = await studio.animate(data.image, r.prompt, r.seed, r.motionSteps,
        r.motionGuidance, progress);
    } else if (data.type === 'decompose') {
      panels = await studio.decompose(data.frames);
    } else if (data.type === 'transfer') {
      panels = await studio.transfer(data.a, data.b);
    } else {
      throw new Error(`unknown request ${data.type}`);
    }
    const result = plain(panels);
    postMessage({ type: 'result', kind: data.type, panels: result, gpu: gpuCounts() },
      [result.clip.buffer, result.contentOnly.buffer, result.content.buffer, result.gif.buffer]);
  } catch (e) {
    postMessage({ type: 'error', message: String(e && e.message || e) });
  }
};
