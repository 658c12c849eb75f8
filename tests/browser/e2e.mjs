// End-to-end test of the browser app: serves the built site (`trunk build --release` writes
// it to dist/) on 127.0.0.1 and drives Debian's Chromium headless, WebGPU on SwiftShader.
//
//   node e2e.mjs [SITE_DIR]        (default: ../../dist)
//
// Checks: the page loads the model on WebGPU; a clip generated with few steps shows frames
// that are not blank and differ from each other; a bundled real clip is decomposed (PSNR
// shown); a bad upload gets a clear message; without WebGPU the page says so and runs on the
// CPU. Screenshots go to $ARTIFACTS (default: ./artifacts).
import { createServer } from 'node:http';
import { readFile, mkdir, writeFile } from 'node:fs/promises';
import { extname, join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const site = resolve(process.argv[2] || join(here, '../../dist'));
const artifacts = resolve(process.env.ARTIFACTS || join(here, 'artifacts'));
const clip = join(here, '../fixtures/clips/box.mp4');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const MIME = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm',
  '.css': 'text/css', '.json': 'application/json', '.safetensors': 'application/octet-stream' };

function serve() {
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const file = join(site, path.endsWith('/') ? path + 'index.html' : path);
    if (!file.startsWith(site)) { res.writeHead(403).end(); return; }
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': MIME[extname(file)] || 'application/octet-stream',
        'content-length': body.length });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}

const flags = ['--headless=new', '--no-sandbox', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--use-angle=swiftshader', '--enable-unsafe-swiftshader'];

let failures = 0;
function check(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures += 1;
}

async function page(browser, url) {
  const p = await browser.newPage({ viewport: { width: 1200, height: 1400 } });
  p.on('console', (m) => console.log(`  [page] ${m.text()}`));
  p.on('pageerror', (e) => console.log(`  [page error] ${e.message}`));
  await p.goto(url);
  await p.waitForFunction(() => window.cmd && (window.cmd.ready || window.cmd.error), null, { timeout: 300_000 });
  return p;
}

async function generate(p, steps) {
  await p.fill('#steps', String(steps));
  await p.fill('#motion-steps', String(steps));
  await p.click('#generate');
  await p.waitForFunction(() => window.cmd.last || window.cmd.error, null, { timeout: 600_000 });
  return p.evaluate(() => ({ last: window.cmd.last, error: window.cmd.error }));
}

async function main() {
  await mkdir(artifacts, { recursive: true });
  const server = await serve();
  const url = `http://127.0.0.1:${server.address().port}/`;
  console.log(`serving ${site} at ${url}`);

  // WebGPU (SwiftShader).
  const gpu = await chromium.launch({ executablePath, args: [...flags, '--enable-unsafe-webgpu'] });
  try {
    const p = await page(gpu, url);
    const state = await p.evaluate(() => ({ backend: window.cmd.backend, error: window.cmd.error }));
    check(state.backend === 'WebGPU', `model loads on WebGPU (backend: ${state.backend}, error: ${state.error})`);
    const t0 = Date.now();
    const { last, error } = await generate(p, 4);
    console.log(`  generated in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    check(!error && last && last.frames === 16, `a 16-frame clip is generated (${error || ''})`);
    if (last) {
      const blank = last.means.every((m) => m < 2 || m > 253);
      check(!blank, `frames are not blank (mean brightness ${last.means[0].toFixed(1)})`);
      check(last.meanChange > 0.1, `frames differ from each other (mean change ${last.meanChange.toFixed(2)})`);
    }
    await p.waitForTimeout(500);
    await p.screenshot({ path: join(artifacts, 'generated.png'), fullPage: true });

    // Decompose a bundled real clip.
    await p.evaluate(() => { window.cmd.last = null; });
    await p.setInputFiles('#decompose-file', clip);
    await p.waitForFunction(() => window.cmd.last || window.cmd.error, null, { timeout: 300_000 });
    const decomposed = await p.evaluate(() => ({ last: window.cmd.last, error: window.cmd.error,
      psnr: document.getElementById('psnr').textContent }));
    check(!decomposed.error && /PSNR \d/.test(decomposed.psnr), `box.mp4 is decomposed (${decomposed.psnr || decomposed.error})`);
    await p.screenshot({ path: join(artifacts, 'decomposed.png'), fullPage: true });

    // A bad upload gets one clear message.
    const bad = join(artifacts, 'not-a-video.txt');
    await writeFile(bad, 'hello');
    await p.evaluate(() => { window.cmd.error = null; });
    await p.setInputFiles('#decompose-file', bad);
    await p.waitForFunction(() => window.cmd.error, null, { timeout: 30_000 });
    const message = await p.evaluate(() => window.cmd.error);
    check(/not-a-video\.txt: not a video file/.test(message), `a bad upload is named (${message})`);
  } finally {
    await gpu.close();
  }

  // No WebGPU: the page says so and runs on the CPU.
  const cpu = await chromium.launch({ executablePath, args: flags });
  try {
    const p = await page(cpu, url);
    const state = await p.evaluate(() => ({ backend: window.cmd.backend,
      status: document.getElementById('status').textContent }));
    check(state.backend && state.backend.startsWith('CPU'), `without WebGPU the model runs on the CPU (${state.backend})`);
    check(/WebGPU/.test(state.status) && /CPU/.test(state.status), `the page says so (${state.status})`);
    await p.screenshot({ path: join(artifacts, 'no-webgpu.png'), fullPage: true });
  } finally {
    await cpu.close();
  }
  server.close();
  if (failures) {
    console.log(`${failures} check(s) failed`);
    process.exit(1);
  }
  console.log('all browser checks passed');
}

main().catch((e) => { console.error(e); process.exit(1); });
