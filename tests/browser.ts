// Headless Chromium for browser tests: a localhost server (a secure context, as WebGPU needs)
// and Puppeteer driving the system Chromium with WebGPU enabled. Without a GPU, Chromium hands
// WebGPU to SwiftShader (~0.2-0.4 GFLOP/s), so browser tests use small problems; the 'gles'
// adapter (below) reaches lavapipe instead, 15-25x faster here (bench/README.md, "Browser").

import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import puppeteer, { type Browser } from 'puppeteer-core';

export interface Served {
  url: string;
  close(): Promise<void>;
}

/** Serves fixed files on 127.0.0.1 at a free port; `files` maps paths to [content type, body]. */
export async function serve(files: Record<string, [string, string | Uint8Array]>): Promise<Served> {
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const file = files[path];
    if (!file) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': file[0], 'cache-control': 'no-store' }).end(file[1]);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://localhost:${port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** The Chromium to drive: `override`, else $CHROME_PATH, else the usual system paths. */
export function chromiumPath(override?: string): string {
  if (override) {
    if (!existsSync(override)) throw new Error(`no browser at ${override} (from --chrome)`);
    return override;
  }
  const candidates = [process.env.CHROME_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].filter(Boolean) as string[];
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`no Chromium found (tried ${candidates.join(', ')}); install it (Debian: apt-get install chromium) or set CHROME_PATH`);
  return found;
}

export type BrowserAdapter = 'default' | 'swiftshader' | 'gles';

/**
 * How to reach each WebGPU adapter in Chromium (checked on Chromium 156; bench/README.md,
 * "Browser", has what was tried). 'default': Chromium's own choice (a real GPU if any, else
 * SwiftShader). 'swiftshader': forced SwiftShader. 'gles': Dawn's OpenGL ES backend on ANGLE on
 * Vulkan, which on a machine without a GPU is Mesa's lavapipe; Dawn offers that backend only as a
 * compatibility-mode adapter, so the page must ask for featureLevel 'compatibility' (the demo's
 * ?featureLevel=compatibility). Chromium's Dawn never lists lavapipe as a Vulkan adapter itself.
 */
export const BROWSER_ADAPTERS: Record<BrowserAdapter, { args: string[]; featureLevel?: 'compatibility' }> = {
  default: { args: [] },
  swiftshader: { args: ['--use-webgpu-adapter=swiftshader'] },
  gles: { args: ['--use-angle=vulkan', '--use-webgpu-adapter=opengles'], featureLevel: 'compatibility' },
};

export function isBrowserAdapter(name: string): name is BrowserAdapter {
  return Object.hasOwn(BROWSER_ADAPTERS, name);
}

/** `env`: the browser's environment (default this process's), e.g. its own XDG_CACHE_HOME for Mesa's shader cache. */
export async function launchChromium(extraArgs: string[] = [], options: { executablePath?: string; env?: Record<string, string | undefined> } = {}): Promise<Browser> {
  return puppeteer.launch({
    executablePath: chromiumPath(options.executablePath),
    env: options.env,
    headless: true,
    // Puppeteer's headless default routes ANGLE to SwiftShader; drop it when the caller picks ANGLE's backend.
    ignoreDefaultArgs: extraArgs.some((a) => a.startsWith('--use-angle=')) ? ['--use-angle=swiftshader-webgl'] : [],
    args: [
      '--no-sandbox',
      '--enable-unsafe-webgpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
      ...extraArgs,
    ],
  });
}
