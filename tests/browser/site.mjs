// What the browser scripts share: serving the built site on 127.0.0.1, launching Debian's
// Chromium headless (WebGPU on SwiftShader with `webgpu`), and opening the page until the
// model is loaded.
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const MIME = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm',
  '.css': 'text/css', '.json': 'application/json', '.safetensors': 'application/octet-stream' };

// Cross-origin isolation: with these headers the page may share memory between workers, and
// runs the threaded engine on the CPU (web/worker.js).
const ISOLATED = { 'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'require-corp' };

// Serves the folder `site` on a free port of 127.0.0.1, cross-origin isolated with `isolated`,
// answering 404 for paths that start with `missing` (a site built without some files);
// resolves to the server.
export function serve(site, { isolated = false, missing = null } = {}) {
  const root = resolve(site);
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    if (missing && path.startsWith(missing)) { res.writeHead(404).end(); return; }
    const file = join(root, path.endsWith('/') ? path + 'index.html' : path);
    if (!file.startsWith(root)) { res.writeHead(403).end(); return; }
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': MIME[extname(file)] || 'application/octet-stream',
        'content-length': body.length, ...(isolated ? ISOLATED : {}) });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}

const flags = ['--headless=new', '--no-sandbox', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--use-angle=swiftshader', '--enable-unsafe-swiftshader'];

// Headless Chromium ($CHROMIUM, default /usr/bin/chromium), with WebGPU when `webgpu`.
export function launch(webgpu) {
  const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
  return chromium.launch({ executablePath, args: webgpu ? [...flags, '--enable-unsafe-webgpu'] : flags });
}

// Opens `url` and waits until the model is loaded (or failed); the page's console is echoed.
export async function open(browser, url) {
  const p = await browser.newPage({ viewport: { width: 1200, height: 1400 } });
  p.on('console', (m) => console.log(`  [page] ${m.text()}`));
  p.on('pageerror', (e) => console.log(`  [page error] ${e.message}`));
  await p.goto(url);
  await p.waitForFunction(() => window.cmd && (window.cmd.ready || window.cmd.error), null, { timeout: 300_000 });
  return p;
}

// Generates a clip with `steps` content and motion steps; resolves to {last, error}.
export async function generate(p, steps) {
  await p.fill('#steps', String(steps));
  await p.fill('#motion-steps', String(steps));
  await p.evaluate(() => { window.cmd.last = null; });
  await p.click('#generate');
  await p.waitForFunction(() => window.cmd.last || window.cmd.error, null, { timeout: 600_000 });
  return p.evaluate(() => ({ last: window.cmd.last, error: window.cmd.error }));
}
