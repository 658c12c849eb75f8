// The page: controls, the model's Web Worker, the clip player and the teaching panels.
// `?cpu=1` runs the model on the CPU even where WebGPU exists; `?gpu=1` runs it on WebGPU even
// where that is a software fallback (slower than the CPU); `?bench=1` times every stage of a
// generation (and on WebGPU counts its dispatches, submissions and read-backs) and prints a
// table to the console; `?maxBuffer=BYTES` pretends the GPU's largest
// buffer is that small (to see what a too-small GPU is told); `?workers=1` keeps the CPU path
// on one worker (by default it splits its work over a pool of workers, one per core, where the
// page is cross-origin isolated, and else a second worker computes half of every guided step;
// see worker.js); `?threads=N` makes that pool N workers; `?isolate=0` keeps the page from
// isolating itself through isolate.js where its host does not.
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const MAX_UPLOAD = 200 * 1024 * 1024;

// State the end-to-end test reads too.
const state = window.cmd = { ready: false, busy: false, backend: null, size: null, clips: null, last: null, error: null };

let worker = null;
let pending = null; // {resolve, reject}
let started = 0;
let stageStarted = 0;
let timings = [];
// The WebGPU call counts (see worker.js) when the stage began and the latest ones; null off
// WebGPU or without ?bench=1.
let stageGpu = null;
let lastGpu = null;

function setStatus(text, error = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', error);
  if (error) state.error = text;
}

// The progress bar is redrawn at most every PROGRESS_MS (its start and end at once): sampler
// steps can take a few milliseconds, and where the browser draws the page in software (no GPU)
// every redraw takes CPU time from the model (measured: a third of a core during a clip).
const PROGRESS_MS = 250;
let progressShown = 0;
let progressQueued = null;
function setProgress(value, text) {
  const waiting = progressQueued !== null;
  progressQueued = [value, text];
  const wait = progressShown + PROGRESS_MS - performance.now();
  if (wait <= 0 || value <= 0 || value >= 1) showProgress();
  else if (!waiting) setTimeout(showProgress, wait);
}

function showProgress() {
  if (!progressQueued) return;
  const [value, text] = progressQueued;
  progressQueued = null;
  progressShown = performance.now();
  $('progress').value = value;
  $('progress-text').textContent = text;
}

function eta(fraction, since) {
  if (fraction <= 0) return '';
  const left = (performance.now() - since) / 1000 * (1 - fraction) / fraction;
  return left < 1 ? '' : `, about ${Math.ceil(left)} s left`;
}

// (Re)starts the worker and loads the model; resolves when it is ready.
function startWorker() {
  if (worker) worker.terminate();
  state.ready = false;
  worker = new Worker('worker.js', { type: 'module' });
  worker.onerror = (e) => {
    const message = `The model stopped (${e.message || e}). If your GPU is small, the CPU may do: add ?cpu=1 to the address.`;
    if (pending) { pending.reject(new Error(message)); pending = null; } else fail(message);
  };
  worker.onmessage = ({ data }) => onMessage(data);
  const gpu = !params.has('cpu') && 'gpu' in navigator;
  if (!('gpu' in navigator)) {
    setStatus('This browser has no WebGPU: the model will run on the CPU (slower).');
  } else {
    setStatus('Loading the model…');
  }
  started = performance.now();
  worker.postMessage({ type: 'load', gpu, forceGpu: params.has('gpu'),
    maxBuffer: Number(params.get('maxBuffer')) || 0, count: params.has('bench'),
    helper: params.get('workers') !== '1',
    threads: params.get('workers') === '1' ? false : Number(params.get('threads')) || 0 });
}

function onMessage(data) {
  if (data.type === 'download') {
    const f = data.total ? data.loaded / data.total : 0;
    setProgress(f, `${data.what} ${(data.loaded / 1e6).toFixed(1)} of ${(data.total / 1e6).toFixed(1)} MB${eta(f, started)}`);
  } else if (data.type === 'ready') {
    Object.assign(state, { ready: true, backend: data.backend, size: data });
    const where = data.backend.startsWith('WebGPU') ? 'on your GPU (WebGPU)' : `on the ${data.backend}`;
    setStatus(`Model ready, running ${where}. Clips are ${data.frames} frames of ${data.width}×${data.height}.`,
      false);
    setProgress(0, '');
    setBusy(false);
  } else if (data.type === 'progress') {
    onProgress(data);
  } else if (data.type === 'result') {
    if (data.gpu) lastGpu = data.gpu;
    if (pending) pending.resolve(data);
    pending = null;
  } else if (data.type === 'error') {
    if (pending) { pending.reject(new Error(data.message)); pending = null; } else fail(data.message);
  }
}

const STAGES = { text: [0, 0.02], content: [0.02, 0.5], motion: [0.52, 0.43], decode: [0.95, 0.05] };
let lastStage = null;
let lastTotal = 0; // the running stage's steps
function onProgress({ stage, done, total, gpu }) {
  if (stage !== lastStage) {
    endStage();
    lastStage = stage;
    stageStarted = performance.now();
    stageGpu = gpu;
  }
  lastGpu = gpu;
  lastTotal = total;
  const [start, width] = STAGES[stage];
  const f = start + width * (total ? done / total : 0);
  setProgress(f, `${stage} ${done}/${total}${eta(f, started)}`);
}

// Closes the running stage's timing: its milliseconds, its steps and (when counted) the
// WebGPU calls it made.
function endStage() {
  if (!lastStage) return;
  const entry = { stage: lastStage, ms: performance.now() - stageStarted, steps: lastTotal };
  if (stageGpu && lastGpu) {
    const { kernels, ...calls } = lastGpu;
    for (const key of Object.keys(calls)) entry[key] = calls[key] - stageGpu[key];
    entry.kernels = {};
    for (const [family, n] of Object.entries(kernels)) {
      const made = n - (stageGpu.kernels[family] || 0);
      if (made) entry.kernels[family] = made;
    }
  }
  timings.push(entry);
}

function fail(message) {
  setStatus(message, true);
  setBusy(false);
}

function setBusy(busy) {
  state.busy = busy;
  if (!busy) play();
  $('generate').disabled = busy || !state.ready;
  $('transfer').disabled = busy || !state.ready;
  $('cancel').disabled = !busy;
}

// Sends a request to the worker; resolves with its result.
function ask(message, transfer = []) {
  setBusy(true);
  state.error = null;
  started = performance.now();
  lastStage = null;
  timings = [];
  return new Promise((resolve, reject) => {
    pending = { resolve, reject };
    worker.postMessage(message, transfer);
  }).finally(() => {
    endStage();
    setBusy(false);
  });
}

function request() {
  const num = (id, lo, hi) => {
    const v = Number($(id).value);
    if (!Number.isFinite(v) || v < lo || v > hi) throw new Error(`${$(id).labels[0].textContent.trim()}: expected a number from ${lo} to ${hi}, found "${$(id).value}"`);
    return v;
  };
  const prompt = $('prompt').value.trim();
  if (!prompt) throw new Error('Prompt: type what the clip should show');
  return {
    prompt, seed: num('seed', 0, 4294967295) >>> 0,
    steps: Math.round(num('steps', 1, 1000)), motionSteps: Math.round(num('motion-steps', 1, 1000)),
    guidance: num('guidance', 0, 100), motionGuidance: num('motion-guidance', 0, 100),
  };
}

async function run(title, message, transfer) {
  try {
    const { panels } = await ask(message, transfer);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    // The status line said what was running; now it says it is over (show() may add a
    // warning about the prompt instead).
    setStatus(`Done: ${title}, in ${seconds} s.`);
    setProgress(1, `done in ${seconds} s`);
    show(title, panels);
    if (params.has('bench')) bench(title);
    return panels;
  } catch (e) {
    fail(e.message);
  }
}

function bench(title) {
  const total = timings.reduce((s, t) => s + t.ms, 0);
  console.log(`bench: ${title} on ${state.backend}`);
  console.table(timings.map(({ kernels, ...t }) => ({ ...t, ms: Math.round(t.ms) }))
    .concat([{ stage: 'total', ms: Math.round(total) }]));
  state.timings = timings;
}

// ---- showing results --------------------------------------------------------------------

let player = null;

function draw(canvas, width, height, rgba) {
  // Resizing a canvas clears and reallocates it: only when the size changes.
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
  canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(rgba), width, height), 0, 0);
}

function frameOf(panels, buffer, i) {
  const size = panels.width * panels.height * 4;
  return buffer.subarray(i * size, (i + 1) * size);
}

function show(title, panels) {
  $('result').hidden = false;
  $('result-title').textContent = title;
  $('psnr').textContent = panels.psnr != null ? `reconstruction PSNR ${panels.psnr.toFixed(2)} dB` : '';
  if (panels.psnr != null && state.clips) $('psnr').textContent += ` (real-video autoencoder '${state.clips.autoencoder}', ${panels.width}×${panels.height})`;
  if (panels.truncated) setStatus('The prompt was longer than 75 tokens; its end was cut.');
  draw($('content'), panels.width, panels.height, panels.content);
  draw($('weights'), panels.weights.width, panels.weights.height, panels.weights.rgba);
  draw($('motion'), panels.motion.width, panels.motion.height, panels.motion.rgba);
  state.last = { title, ...summary(panels) };
  player = { panels, frame: 0, last: 0 };
  state.panels = panels;
  play();
}

// Per-frame mean brightness and the mean change between frames (for tests and sanity).
function summary(panels) {
  const means = [];
  let change = 0;
  for (let i = 0; i < panels.frames; i++) {
    const f = frameOf(panels, panels.clip, i);
    let sum = 0;
    for (let j = 0; j < f.length; j += 4) sum += f[j] + f[j + 1] + f[j + 2];
    means.push(sum / (f.length / 4 * 3));
    if (i > 0) {
      const g = frameOf(panels, panels.clip, i - 1);
      let d = 0;
      for (let j = 0; j < f.length; j++) d += Math.abs(f[j] - g[j]);
      change += d / f.length;
    }
  }
  return { frames: panels.frames, means, meanChange: change / Math.max(1, panels.frames - 1) };
}

// The clip player draws the frames at the chosen speed. It rests while the model works: where
// the browser draws the page in software, its redraws take CPU time from the model.
let ticking = false;
function play() {
  if (!ticking) { ticking = true; requestAnimationFrame(tick); }
}

function tick(now) {
  if (!player || state.busy) { ticking = false; return; }
  requestAnimationFrame(tick);
  const fps = 8 * Number($('speed').value);
  if (now - player.last < 1000 / fps) return;
  player.last = now;
  const { panels } = player;
  draw($('player'), panels.width, panels.height, frameOf(panels, panels.clip, player.frame));
  draw($('still'), panels.width, panels.height, frameOf(panels, panels.contentOnly, player.frame));
  player.frame += 1;
  if (player.frame >= panels.frames) player.frame = $('loop').checked ? 0 : panels.frames - 1;
}

function download(name, blob) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

async function recordWebm() {
  const canvas = $('player');
  if (!player || !canvas.captureStream || typeof MediaRecorder === 'undefined') {
    return fail('This browser cannot record a canvas as WebM; download the GIF instead.');
  }
  const recorder = new MediaRecorder(canvas.captureStream(30), { mimeType: 'video/webm' });
  const chunks = [];
  recorder.ondataavailable = (e) => chunks.push(e.data);
  const done = new Promise((r) => { recorder.onstop = r; });
  player.frame = 0;
  recorder.start();
  await new Promise((r) => setTimeout(r, 1000 * player.panels.frames / (8 * Number($('speed').value)) + 100));
  recorder.stop();
  await done;
  download('cmd-clip.webm', new Blob(chunks, { type: 'video/webm' }));
}

// ---- reading the user's files ------------------------------------------------------------

function checkUpload(file, kind) {
  if (!file) throw new Error(`no ${kind} chosen`);
  if (!file.type.startsWith(kind)) throw new Error(`${file.name}: not a ${kind} file (its type is "${file.type || 'unknown'}")`);
  if (file.size > MAX_UPLOAD) throw new Error(`${file.name}: ${(file.size / 1e6).toFixed(0)} MB is too large (at most ${MAX_UPLOAD / 1e6} MB)`);
}

// Draws a picture or video frame centre-cropped to a square and scaled to `size`.
function grab(source, sw, sh, ctx, size = state.size) {
  const { width, height } = size;
  const side = Math.min(sw, sh);
  ctx.drawImage(source, (sw - side) / 2, (sh - side) / 2, side, side, 0, 0, width, height);
  return ctx.getImageData(0, 0, width, height).data;
}

function seek(video, time) {
  return new Promise((resolve, reject) => {
    video.onseeked = () => resolve();
    video.onerror = () => reject(new Error('the video cannot be decoded here'));
    video.currentTime = time;
  });
}

// The first frames of a video file as RGBA, as many and as large as `size` says (the
// real-video autoencoder's), at its frame rate or faster for short files.
async function videoFrames(file, size) {
  checkUpload(file, 'video');
  const video = document.createElement('video');
  video.muted = true;
  video.preload = 'auto';
  video.src = URL.createObjectURL(file);
  try {
    await new Promise((resolve, reject) => {
      video.onloadeddata = resolve;
      video.onerror = () => reject(new Error(`${file.name}: not a video this browser can play`));
    });
    const { frames, width, height, fps } = size;
    if (!(video.duration > 0) || video.videoWidth === 0) throw new Error(`${file.name}: the video has no frames`);
    const step = Math.min(1 / fps, video.duration / frames);
    if (video.duration < step * (frames - 1)) throw new Error(`${file.name}: too short`);
    const canvas = new OffscreenCanvas(width, height);
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    const out = new Uint8Array(frames * width * height * 4);
    for (let i = 0; i < frames; i++) {
      await seek(video, Math.min(i * step, video.duration - 1e-3));
      out.set(grab(video, video.videoWidth, video.videoHeight, ctx, size), i * width * height * 4);
    }
    return out;
  } finally {
    URL.revokeObjectURL(video.src);
  }
}

async function pictureOf(file) {
  checkUpload(file, 'image');
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw new Error(`${file.name}: not a picture this browser can read`);
  }
  const canvas = new OffscreenCanvas(state.size.width, state.size.height);
  return new Uint8Array(grab(bitmap, bitmap.width, bitmap.height, canvas.getContext('2d')));
}

// The real-video autoencoder's clip size, fetching and loading it the first time.
async function clipModel() {
  if (!state.clips) {
    setStatus('Loading the real-video autoencoder…');
    const { size } = await ask({ type: 'clips' });
    state.clips = size;
  }
  return state.clips;
}

async function guarded(work) {
  try {
    if (!state.ready) throw new Error('the model is still loading');
    await work();
  } catch (e) {
    fail(e.message);
  }
}

// ---- wiring -----------------------------------------------------------------------------

$('generate-form').addEventListener('submit', (e) => {
  e.preventDefault();
  guarded(async () => {
    const r = request();
    setStatus(`Generating “${r.prompt}”…`);
    await run(`“${r.prompt}”`, { type: 'generate', request: r });
  });
});
$('cancel').addEventListener('click', () => {
  if (pending) { pending.reject(new Error('Cancelled.')); pending = null; }
  startWorker(); // terminating the worker is what stops the work
  setStatus('Cancelled; reloading the model…');
});
$('speed').addEventListener('input', () => { $('speed-value').textContent = `${$('speed').value}×`; });
$('download-gif').addEventListener('click', () => player && download('cmd-clip.gif', new Blob([player.panels.gif], { type: 'image/gif' })));
$('download-webm').addEventListener('click', () => recordWebm());
$('decompose-file').addEventListener('change', () => guarded(async () => {
  const file = $('decompose-file').files[0];
  checkUpload(file, 'video');
  const frames = await videoFrames(file, await clipModel());
  setStatus(`Decomposing ${file.name}…`);
  await run(`${file.name}: content + motion, decoded`, { type: 'decompose', frames }, [frames.buffer]);
}));
$('transfer').addEventListener('click', () => guarded(async () => {
  const [a, b] = [$('transfer-a').files[0], $('transfer-b').files[0]];
  checkUpload(a, 'video');
  checkUpload(b, 'video');
  const size = await clipModel();
  const fa = await videoFrames(a, size);
  const fb = await videoFrames(b, size);
  setStatus(`Content of ${a.name} with the motion of ${b.name}…`);
  await run(`content of ${a.name}, motion of ${b.name}`, { type: 'transfer', a: fa, b: fb }, [fa.buffer, fb.buffer]);
}));
async function animate(file) {
  await guarded(async () => {
    const image = await pictureOf(file);
    const r = request();
    setStatus(`Animating ${file.name}: “${r.prompt}”…`);
    await run(`${file.name}, “${r.prompt}”`, { type: 'animate', image, request: r }, [image.buffer]);
  });
}
$('animate-file').addEventListener('change', () => animate($('animate-file').files[0]));
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); animate(e.dataTransfer.files[0]); });

// Cross-origin isolation where the host does not send its headers: the service worker of
// isolate.js adds them, after one reload (once a session at most, so a browser that will not
// isolate the page is not reloaded again). Needs a secure context (https or localhost);
// `?isolate=0` goes without.
async function isolate() {
  if (self.crossOriginIsolated || params.get('isolate') === '0') return;
  if (!('serviceWorker' in navigator) || !window.isSecureContext) return;
  const registered = await navigator.serviceWorker.register('isolate.js').catch(() => null);
  if (!registered || sessionStorage.getItem('cmd-isolating')) return;
  sessionStorage.setItem('cmd-isolating', '1');
  setStatus('Preparing the page for threads (one reload)…');
  await navigator.serviceWorker.ready;
  location.reload();
  await new Promise(() => {}); // the page is going away
}

setBusy(true);
isolate().finally(startWorker);
