// End-to-end test of the browser app: serves the built site (`trunk build --release` writes
// it to dist/) on 127.0.0.1 and drives Debian's Chromium headless, WebGPU on SwiftShader.
//
//   node e2e.mjs [SITE_DIR]        (default: ../../dist)
//
// Checks: a software WebGPU adapter gives way to the CPU unless `?gpu=1`; with it the page
// loads the model on WebGPU; a clip generated with few steps, reading nothing back from the
// GPU in its sampler steps, shows frames
// that are not blank and differ from each other; a bundled real clip is decomposed by the
// real-video autoencoder, fetched only then (PSNR shown), and motion transferred with it
// without fetching it again; a bad upload gets a clear message; without WebGPU the page says so and runs on the
// CPU, isolating itself through its service worker where the host sends no headers, or on two
// workers (the same clip as on one); so does a GPU too small for the model; a
// cross-origin isolated page runs the threaded engine on the CPU (the same clip as on one
// thread), and decomposes a clip with it, or runs the one-thread engine where the site lacks
// the threaded build. Screenshots go to $ARTIFACTS (default: ./artifacts).
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve, launch, open, generate } from './site.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const site = resolve(process.argv[2] || join(here, '../../dist'));
const artifacts = resolve(process.env.ARTIFACTS || join(here, 'artifacts'));
const clip = join(here, '../fixtures/clips/box.mp4');

let failures = 0;
function check(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures += 1;
}

// Generates a 3 + 3 step clip on page `p` and on a page of `browser` opened at `oneUrl` (the
// CPU path on one worker), and checks that the same seed gave the same clip on `what` and on
// one; resolves to the second page's backend.
async function sameAsOne(browser, p, oneUrl, what) {
  const many = await generate(p, 3);
  const one = await open(browser, oneUrl);
  const backend = await one.evaluate(() => window.cmd.backend);
  const single = await generate(one, 3);
  await one.close();
  check(!many.error && !single.error && many.last && single.last,
    `clips are generated on ${what} and on one (${many.error || single.error || ''})`);
  if (many.last && single.last) {
    const worst = Math.max(...many.last.means.map((m, i) => Math.abs(m - single.last.means[i])));
    check(worst < 0.05, `the same seed gives the same clip on ${what} and on one (frame means differ by ${worst.toFixed(4)})`);
  }
  return backend;
}

async function main() {
  await mkdir(artifacts, { recursive: true });
  const server = await serve(site);
  const url = `http://127.0.0.1:${server.address().port}/`;
  console.log(`serving ${site} at ${url}`);

  // WebGPU (SwiftShader).
  const gpu = await launch(true);
  try {
    // SwiftShader is a software adapter: by default the page prefers the CPU and says why.
    const soft = await open(gpu, url);
    const chosen = await soft.evaluate(() => ({ backend: window.cmd.backend,
      status: document.getElementById('status').textContent }));
    check(chosen.backend.startsWith('CPU') && /WebGPU runs in software/.test(chosen.status),
      `a software WebGPU adapter gives way to the CPU, and the page says so (${chosen.status})`);
    await soft.close();

    // ?gpu=1: WebGPU (SwiftShader) all the same, running the WGSL kernels of shaders/
    // (?bench=1 counts the WebGPU calls of each stage).
    const p = await open(gpu, `${url}?gpu=1&bench=1`);
    const state = await p.evaluate(() => ({ backend: window.cmd.backend, error: window.cmd.error }));
    check(state.backend === 'WebGPU', `model loads on WebGPU (backend: ${state.backend}, error: ${state.error})`);
    const t0 = Date.now();
    const { last, error } = await generate(p, 4);
    console.log(`  generated in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    check(!error && last && last.frames === 16, `a 16-frame clip is generated (${error || ''})`);
    const said = await p.evaluate(() => document.getElementById('status').textContent);
    check(/^Done: /.test(said), `the status line says the clip is done (${said})`);
    // The sampler steps read nothing back from the GPU (a barrier settles each step, after
    // burn's fusion has handed its queued operations over).
    const stages = await p.evaluate(() => window.cmd.timings.filter((t) => ['content', 'motion'].includes(t.stage)));
    check(stages.length === 2 && stages.every((t) => t.readbacks === 0 && t.dispatches > 0),
      `no read-backs in the sampler steps (${stages.map((t) => `${t.stage}: ${t.readbacks} read-backs, ${t.dispatches} dispatches`).join('; ')})`);
    // The attention and norm kernels of shaders/ are in use: a content step is 327 dispatches
    // with them (and channels-last convolution weights) against 869 without, a motion step 105
    // against 195.
    const budget = { content: 400, motion: 150 };
    check(stages.every((t) => t.steps > 0 && t.dispatches / t.steps <= budget[t.stage]),
      `sampler steps within their dispatch budgets (${stages.map((t) => `${t.stage}: ${(t.dispatches / t.steps).toFixed(0)} per step, at most ${budget[t.stage]}`).join('; ')})`);
    if (last) {
      const blank = last.means.every((m) => m < 2 || m > 253);
      check(!blank, `frames are not blank (mean brightness ${last.means[0].toFixed(1)})`);
      check(last.meanChange > 0.1, `frames differ from each other (mean change ${last.meanChange.toFixed(2)})`);
    }
    await p.waitForTimeout(500);
    await p.screenshot({ path: join(artifacts, 'generated.png'), fullPage: true });

    // Decompose a bundled real clip with the real-video autoencoder, fetched on first use
    // and only then.
    const fetched = [];
    p.on('request', (r) => { if (r.url().includes('/real/')) fetched.push(r.url()); });
    const cachedEarly = await p.evaluate(() => caches.has('cmd-real-autoencoder'));
    check(!cachedEarly, 'the real-video autoencoder is not loaded before it is needed');
    await p.evaluate(() => { window.cmd.last = null; });
    await p.setInputFiles('#decompose-file', clip);
    await p.waitForFunction(() => window.cmd.last || window.cmd.error, null, { timeout: 900_000 });
    const decomposed = await p.evaluate(() => ({ last: window.cmd.last, error: window.cmd.error,
      clips: window.cmd.clips, psnr: document.getElementById('psnr').textContent }));
    const db = Number((/PSNR ([\d.]+) dB/.exec(decomposed.psnr) || [])[1]);
    check(!decomposed.error && /real-video autoencoder/.test(decomposed.psnr) && db > 24,
      `box.mp4 is decomposed by the real-video autoencoder (${decomposed.psnr || decomposed.error})`);
    const saidDecomposed = await p.evaluate(() => document.getElementById('status').textContent);
    check(/^Done: /.test(saidDecomposed), `the status line says decomposing is over (${saidDecomposed})`);
    check(decomposed.clips && decomposed.last.frames === decomposed.clips.frames,
      `at the real-video autoencoder's size (${JSON.stringify(decomposed.clips)})`);
    await p.screenshot({ path: join(artifacts, 'decomposed.png'), fullPage: true });

    // Motion transfer uses it too, without fetching it again.
    const before = fetched.length;
    await p.evaluate(() => { window.cmd.last = null; });
    await p.setInputFiles('#transfer-a', clip);
    await p.setInputFiles('#transfer-b', clip);
    await p.click('#transfer');
    await p.waitForFunction(() => window.cmd.last || window.cmd.error, null, { timeout: 900_000 });
    const moved = await p.evaluate(() => ({ last: window.cmd.last, error: window.cmd.error }));
    check(!moved.error && moved.last && moved.last.frames === 16, `motion is transferred (${moved.error || ''})`);
    const cached = await p.evaluate(() => caches.has('cmd-real-autoencoder'));
    check(cached, 'the real-video autoencoder is cached for the next visit');
    check(before > 0 && fetched.length === before, `the autoencoder was fetched once (${before} requests, then ${fetched.length - before})`);

    // A bad upload gets one clear message.
    const bad = join(artifacts, 'not-a-video.txt');
    await writeFile(bad, 'hello');
    await p.evaluate(() => { window.cmd.error = null; });
    await p.setInputFiles('#decompose-file', bad);
    await p.waitForFunction(() => window.cmd.error, null, { timeout: 30_000 });
    const message = await p.evaluate(() => window.cmd.error);
    check(/not-a-video\.txt: not a video file/.test(message), `a bad upload is named (${message})`);

    // A GPU too small for the model (its buffers pretended 1000 bytes): the page says so
    // plainly and runs on the CPU.
    const small = await open(gpu, `${url}?gpu=1&maxBuffer=1000`);
    const told = await small.evaluate(() => ({ backend: window.cmd.backend,
      status: document.getElementById('status').textContent }));
    check(told.backend && told.backend.startsWith('CPU') && /cannot hold the model/.test(told.status),
      `a GPU too small for the model is named (${told.status})`);
    await small.close();
  } finally {
    await gpu.close();
  }

  // No WebGPU: the page says so and runs on the CPU. This server sends no isolation headers:
  // by default the page isolates itself (isolate.js, one reload) and runs the threaded engine;
  // with `?isolate=0` it runs the one-thread engine and its second worker.
  const cpu = await launch(false);
  try {
    const auto = await open(cpu, url);
    const selfIsolated = await auto.evaluate(() => ({ isolated: self.crossOriginIsolated,
      backend: window.cmd.backend, reloads: performance.getEntriesByType('navigation')[0].type }));
    check(selfIsolated.isolated && /^CPU \(WebAssembly, \d+ threads\)/.test(selfIsolated.backend),
      `a host without the headers: the page isolates itself (${selfIsolated.reloads}) and runs the threaded engine (${selfIsolated.backend})`);
    await auto.close();
    const p = await open(cpu, `${url}?isolate=0`);
    const state = await p.evaluate(() => ({ backend: window.cmd.backend,
      status: document.getElementById('status').textContent }));
    check(state.backend && state.backend.startsWith('CPU'), `without WebGPU the model runs on the CPU (${state.backend})`);
    check(/WebGPU/.test(state.status) && /CPU/.test(state.status), `the page says so (${state.status})`);
    await p.screenshot({ path: join(artifacts, 'no-webgpu.png'), fullPage: true });

    // On the CPU a second worker computes half of every guided step; `?workers=1` keeps to
    // one. The same seed gives the same clip either way.
    check(/2 workers/.test(state.backend), `the CPU path uses two workers (${state.backend})`);
    const oneBackend = await sameAsOne(cpu, p, `${url}?isolate=0&workers=1`, 'two workers');
    check(!/2 workers/.test(oneBackend), `?workers=1 keeps to one worker (${oneBackend})`);
  } finally {
    await cpu.close();
  }
  server.close();

  // Cross-origin isolated (the headers web/README.md gives): the CPU path runs the threaded
  // engine, one pool worker per core; it gives the same clip as one worker, and decomposes a
  // clip too.
  const isolatedServer = await serve(site, { isolated: true });
  const isolated = `http://127.0.0.1:${isolatedServer.address().port}/`;
  const pool = await launch(false);
  try {
    const p = await open(pool, isolated);
    const backend = await p.evaluate(() => window.cmd.backend);
    const cores = await p.evaluate(() => navigator.hardwareConcurrency);
    check(backend && backend.startsWith(`CPU (WebAssembly, ${cores} threads)`),
      `an isolated page runs the threaded engine, a worker per core (${backend})`);
    const oneBackend = await sameAsOne(pool, p, `${isolated}?workers=1`, 'the threads');
    check(/^CPU \(WebAssembly\)/.test(oneBackend), `?workers=1 keeps to one thread (${oneBackend})`);
    await p.evaluate(() => { window.cmd.last = null; });
    await p.setInputFiles('#decompose-file', clip);
    await p.waitForFunction(() => window.cmd.last || window.cmd.error, null, { timeout: 300_000 });
    const decomposed = await p.evaluate(() => ({ error: window.cmd.error,
      psnr: document.getElementById('psnr').textContent }));
    const db = Number((/PSNR ([\d.]+) dB/.exec(decomposed.psnr) || [])[1]);
    check(!decomposed.error && db > 24, `the threaded engine decomposes box.mp4 (${decomposed.psnr || decomposed.error})`);
  } finally {
    await pool.close();
  }
  isolatedServer.close();

  // An isolated page on a site built without the threaded engine keeps to the one-thread
  // engine (and its second worker).
  const bareServer = await serve(site, { isolated: true, missing: '/threads/' });
  const bare = await launch(false);
  try {
    const p = await open(bare, `http://127.0.0.1:${bareServer.address().port}/`);
    const state = await p.evaluate(() => ({ backend: window.cmd.backend, error: window.cmd.error }));
    check(!state.error && /^CPU \(WebAssembly, 2 workers\)/.test(state.backend),
      `without the threaded build the page runs the one-thread engine (${state.backend || state.error})`);
  } finally {
    await bare.close();
  }
  bareServer.close();
  if (failures) {
    console.log(`${failures} check(s) failed`);
    process.exit(1);
  }
  console.log('all browser checks passed');
}

main().catch((e) => { console.error(e); process.exit(1); });
