// Generation time per stage in headless Chromium, from the page's own `?bench=1` timings: a
// one-step clip first (so compiling the shaders is not timed), then a clip of STEPS content and
// STEPS motion steps; prints a table (on WebGPU with the calls counted, and a second table of
// each sampler step's dispatches by kernel family).
//
//   node bench.mjs [STEPS] [SITE_DIR]   (default: 10, ../../dist; BENCH_CPU=1: without WebGPU;
//                                        BENCH_WORKERS=1: the CPU path on one worker;
//                                        BENCH_ISOLATED=1: the page cross-origin isolated, so
//                                        the CPU path runs the threaded engine;
//                                        BENCH_THREADS=N: its pool of N workers)
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve, launch, open, generate } from './site.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const steps = Number(process.argv[2] || 10);
const site = resolve(process.argv[3] || join(here, '../../dist'));
const webgpu = !process.env.BENCH_CPU;
const oneWorker = process.env.BENCH_WORKERS === '1';
const isolated = process.env.BENCH_ISOLATED === '1';
const threads = process.env.BENCH_THREADS ? `&threads=${process.env.BENCH_THREADS}` : '';

const server = await serve(site, { isolated });
const browser = await launch(webgpu);
try {
  // Without BENCH_ISOLATED the page stays unisolated (it would isolate itself otherwise).
  const isolation = isolated ? '' : '&isolate=0';
  const p = await open(browser, `http://127.0.0.1:${server.address().port}/?bench=1${isolation}${webgpu ? '&gpu=1' : ''}${oneWorker ? '&workers=1' : ''}${threads}`);
  const backend = await p.evaluate(() => window.cmd.backend || window.cmd.error);
  for (const n of [1, steps]) {
    const { error } = await generate(p, n);
    if (error) throw new Error(error);
  }
  const timings = await p.evaluate(() => window.cmd.timings);
  console.log(`\nbrowser (${backend}), guided DDIM ${steps} + ${steps} steps, shaders compiled beforehand`);
  // On WebGPU the page also counts the stage's dispatches, submissions and read-backs.
  const counted = webgpu && timings.some((t) => 'dispatches' in t);
  const keys = ['dispatches', 'submits', 'readbacks'];
  const perStep = (t, key) => (t.steps ? (t[key] / t.steps).toFixed(1) : '');
  console.log(counted
    ? '| stage | ms | dispatches | submissions | read-backs | dispatches / step | read-backs / step |\n|---|---:|---:|---:|---:|---:|---:|'
    : '| stage | ms |\n|---|---:|');
  for (const t of timings) {
    const counts = counted ? keys.map((k) => ` ${t[k]} |`).join('') + ` ${perStep(t, 'dispatches')} | ${perStep(t, 'readbacks')} |` : '';
    console.log(`| ${t.stage} | ${Math.round(t.ms)} |${counts}`);
  }
  const sum = (key) => timings.reduce((s, t) => s + t[key], 0);
  const totals = counted ? keys.map((k) => ` ${sum(k)} |`).join('') + ' | |' : '';
  console.log(`| total | ${Math.round(sum('ms'))} |${totals}`);
  if (counted) {
    // Where a sampler step's dispatches go: the kernel families that make most of them.
    console.log('\n| stage | dispatches per step, by kernel family |\n|---|---|');
    for (const t of timings.filter((t) => t.stage === 'content' || t.stage === 'motion')) {
      const top = Object.entries(t.kernels).sort((a, b) => b[1] - a[1]).slice(0, 10);
      console.log(`| ${t.stage} | ${top.map(([k, n]) => `${k} ${(n / t.steps).toFixed(0)}`).join(', ')} |`);
    }
  }
} finally {
  await browser.close();
  server.close();
}
