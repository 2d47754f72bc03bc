// The npm package as a user gets it: `npm pack` of this working tree (a copy, so the checkout's
// dist/ is left alone), installed into a fresh project, then the installed `npx maskgpu segment` on
// the package's own sample PNG and on a JPEG, the library through `import ... from 'maskgpu'` and
// 'maskgpu/node', and its type declarations under tsc. The tarball must hold compiled JavaScript
// only (no TypeScript to transpile at run time, no esbuild), the bundled model and its samples, and
// nothing heavy besides. Needs the npm registry or npm's cache for the runtime dependencies
// (installed with --prefer-offline). Temporary folders are removed at the end.

import * as assert from 'uvu/assert';
import { suite } from 'uvu';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'maskgpu-package-'));
const app = join(work, 'app');
const installed = join(app, 'node_modules', 'maskgpu');

// npm run inside `npm test` passes its own settings down (npm_config_local_prefix, npm_package_*):
// keep only the ones about where packages come from.
// maskgpu's cache folder (kernel record, background compiles) is the test's own.
const cacheDir = join(app, 'maskgpu-cache');
const env: NodeJS.ProcessEnv = {
  ...Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) || /^npm_config_(cache|registry|userconfig|globalconfig|cafile|ca|strict_ssl|proxy|https_proxy|noproxy)$/i.test(k)),
  ),
  MASKGPU_CACHE_DIR: cacheDir,
};

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command in its own process group; past `timeoutMs` the whole group is killed (npx starts
 * npm, a shell and then node: killing only the first would leave the others running).
 */
function run(command: string, args: string[], cwd: string, timeoutMs = 240_000): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => {
      stderr += `\n[killed after ${timeoutMs} ms]`;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

/** run(), which must succeed; returns its stdout. Slow steps print how long they took. */
async function sh(command: string, args: string[], cwd: string, timeoutMs?: number): Promise<string> {
  const started = Date.now();
  const r = await run(command, args, cwd, timeoutMs);
  const s = (Date.now() - started) / 1000;
  const what = command === process.execPath ? (args[0] === '--input-type=module' ? 'node -e ...' : `node ${basename(args[0])}`) : `${command} ${args[0]}`;
  if (s > 2) console.log(`    ${what}: ${s.toFixed(1)} s`);
  assert.is(r.status, 0, `${command} ${args.join(' ')} (in ${cwd}) exited with ${r.status}:\n${`${r.stdout}${r.stderr}`.slice(-4000)}`);
  return r.stdout;
}

interface PackResult {
  filename: string;
  size: number;
  unpackedSize: number;
  files: Array<{ path: string; size: number }>;
}
let pack: PackResult;

const test = suite('npm package');

test.before(async () => {
  // The working tree as git sees it (tracked and new files, not ignored ones) plus the checkout's
  // node_modules for the build (esbuild, typescript): a clean clone of what is here.
  const src = join(work, 'src');
  const files = (await sh('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], root)).split('\0').filter(Boolean);
  for (const f of files) {
    if (!existsSync(join(root, f))) continue; // deleted, not yet committed
    mkdirSync(dirname(join(src, f)), { recursive: true });
    cpSync(join(root, f), join(src, f));
  }
  symlinkSync(join(root, 'node_modules'), join(src, 'node_modules'), 'dir');
  const out = await sh('npm', ['pack', '--json', '--pack-destination', work], src, 240_000);
  // prepack's own output comes first on stdout; npm's JSON report is the last thing printed.
  pack = JSON.parse(out.slice(out.search(/^\[/m)))[0];
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'maskgpu-package-test', private: true, type: 'module' }));
  await sh('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', join(work, pack.filename)], app, 180_000);
});

test.after(() => {
  rmSync(work, { recursive: true, force: true });
});

test('the tarball holds compiled JavaScript, types, the bundled model and its samples, and nothing else heavy', () => {
  const paths = pack.files.map((f) => f.path).sort();
  for (const p of [
    'package.json',
    'README.md',
    'bin/maskgpu.mjs',
    'dist/cli.js',
    'dist/maskgpu.js',
    'dist/node.js',
    'dist/index.d.ts',
    'dist/node.d.ts',
    'dist/io/index.d.ts',
    'models/maskgpu-shapes.safetensors',
    'models/samples/shapes_0.png',
    'models/samples/shapes_1.png',
    'models/samples/shapes_2.png',
  ]) {
    assert.ok(paths.includes(p), `${p} is in the tarball`);
  }
  const unexpected = paths.filter(
    (p) => !/^(package\.json|README\.md|models\/README\.md|bin\/maskgpu\.mjs|dist\/(cli|maskgpu|node)\.js|dist\/.*\.d\.ts|models\/maskgpu-shapes\.safetensors|models\/samples\/[^/]+\.png)$/.test(p),
  );
  assert.equal(unexpected, [], 'nothing but the CLI, the library, its types, the model and samples');
  const model = pack.files.find((f) => f.path === 'models/maskgpu-shapes.safetensors')!.size;
  assert.ok(pack.unpackedSize - model < 2e6, `${pack.unpackedSize - model} bytes besides the model`);

  const manifest = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8'));
  assert.not.ok('esbuild' in (manifest.dependencies ?? {}), 'esbuild is not a runtime dependency');
  assert.not.ok(existsSync(join(app, 'node_modules', 'esbuild')), 'and is not installed');
  const imported = new Set<string>();
  for (const f of ['cli.js', 'node.js', 'maskgpu.js']) {
    const js = readFileSync(join(installed, 'dist', f), 'utf8');
    assert.not.match(js, /from ["']esbuild["']|\.ts["']\)?;?\s*$/m, `${f} imports no esbuild and no TypeScript`);
    for (const m of js.matchAll(/(?:from|import\()\s*["']([^"'./][^"']*)["']/g)) {
      const name = m[1].replace(/^(@[^/]+\/[^/]+|[^/]+).*$/, '$1');
      assert.ok(name.startsWith('node:') || name in manifest.dependencies, `${f} imports ${name}, which must be a dependency`);
      imported.add(name);
    }
  }
  // webgpu is imported by a name in a variable (engine/device.ts), so bundlers leave it alone.
  assert.match(readFileSync(join(installed, 'dist', 'maskgpu.js'), 'utf8'), /= "webgpu";/);
  imported.add('webgpu');
  imported.add('@webgpu/types'); // dist/*.d.ts reference it
  assert.equal(Object.keys(manifest.dependencies).sort(), [...imported].filter((n) => !n.startsWith('node:')).sort(), 'the dependencies are what the code imports');
  assert.not.match(readFileSync(join(installed, 'dist', 'maskgpu.js'), 'utf8'), /from ["']node:/, 'no Node built-ins in the browser bundle');
});

test('the installed `npx maskgpu segment` segments the bundled sample PNG and a JPEG', async () => {
  // A JPEG made with sharp (a dependency of the package, so installed here).
  await sh(process.execPath, ['--input-type=module', '-e', "import sharp from 'sharp'; await sharp(process.argv[1]).jpeg({ quality: 92 }).toFile('photo.jpg');", join(installed, 'models/samples/shapes_1.png')], app);
  const sample = join('node_modules', 'maskgpu', 'models', 'samples', 'shapes_2.png');
  const started = Date.now();
  const r = await run('npx', ['--no', 'maskgpu', 'segment', sample, 'photo.jpg', '--out', 'out', '--score-thresh', '0.5'], app);
  console.log(`    npx maskgpu segment (2 images): ${((Date.now() - started) / 1000).toFixed(1)} s`);
  assert.is(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /shapes_2\.png: \d+ detections in \d+ ms/);
  assert.match(r.stderr, /segment \[#+\] 2\/2 100%/, 'progress on stderr');
  // The first run took quick stand-ins and left the tuned kernels to a detached process of the installed package.
  const bg = /compiling (\d+) tuned kernels in the background for the next runs \(pid (\d+)/.exec(r.stderr);
  assert.ok(bg, `the background compile is announced: ${r.stderr}`);
  for (let i = 0; i < 3000 && isAlive(Number(bg![2])); i++) await new Promise((res) => setTimeout(res, 100));
  assert.match(readFileSync(join(cacheDir, 'compile-kernels.log'), 'utf8'), new RegExp(`compiled ${bg![1]} kernels in`), 'the installed compile-kernels ran');
  for (const stem of ['shapes_2', 'photo']) {
    const json = JSON.parse(readFileSync(join(app, 'out', `${stem}.json`), 'utf8'));
    const { width: w, height: h } = json.image;
    assert.ok(w > 0 && h > 0, `${stem}: image ${w}x${h}`);
    assert.ok(json.detections.length > 0, `${stem}: ${json.detections.length} detections`);
    for (const d of json.detections) {
      assert.ok(d.score > 0.5 && typeof d.labelName === 'string');
      assert.equal(d.mask.size, [h, w]);
      assert.is(d.mask.counts.reduce((a: number, b: number) => a + b, 0), w * h, 'RLE counts cover the image');
    }
    assert.ok(existsSync(join(app, 'out', `${stem}.png`)), `${stem}.png overlay`);
  }
  const photo = JSON.parse(readFileSync(join(app, 'out', 'photo.json'), 'utf8'));
  // The sample's 5 shapes survive JPEG compression (scores drop a little: all above 0.5 here).
  const names = new Set(photo.detections.map((d: { labelName: string }) => d.labelName));
  for (const n of ['triangle', 'ring', 'square', 'star']) assert.ok(names.has(n), `the JPEG of shapes_1: found a ${n}`);
});

test("the library: 'maskgpu' (the browser-safe bundle, also under Node) and 'maskgpu/node'", async () => {
  const script = `
    import { loadMaskRCNN, TORCHVISION_DEFAULTS, maskrcnnParseOptions, CocoFormatError } from 'maskgpu';
    import { readSafetensorsFile, readImageFile, parsePredictions, BUNDLED_MODEL, BUNDLED_SAMPLES, PACKAGE_ROOT } from 'maskgpu/node';
    const model = await loadMaskRCNN(undefined, await readSafetensorsFile(BUNDLED_MODEL, maskrcnnParseOptions), { boxScoreThresh: 0.5 });
    const result = await model.segment(await readImageFile(BUNDLED_SAMPLES + 'shapes_0.png'));
    model.destroy();
    let shared = false;
    try { parsePredictions({}, 'x'); } catch (e) { shared = e instanceof CocoFormatError; }
    console.log(JSON.stringify({
      resolved: import.meta.resolve('maskgpu'), node: import.meta.resolve('maskgpu/node'), root: PACKAGE_ROOT,
      nms: TORCHVISION_DEFAULTS.boxNmsThresh, detections: result.detections.length, shared,
    }));`;
  const out = JSON.parse((await sh(process.execPath, ['--input-type=module', '-e', script], app)).trim().split('\n').pop()!);
  assert.ok(out.resolved.endsWith('/node_modules/maskgpu/dist/maskgpu.js'), out.resolved);
  assert.ok(out.node.endsWith('/node_modules/maskgpu/dist/node.js'), out.node);
  assert.is(out.root, `${installed}/`);
  assert.is(out.nms, 0.5);
  assert.ok(out.detections > 0, `${out.detections} detections`);
  assert.ok(out.shared, "'maskgpu/node' uses the classes of 'maskgpu' (one copy of the library)");
});

test('the type declarations resolve for a TypeScript user (tsc, Node\'s module resolution)', async () => {
  writeFileSync(
    join(app, 'use.ts'),
    `import { loadMaskRCNN, TORCHVISION_DEFAULTS, type SegmentResult } from 'maskgpu';
import { readImageFile, readSafetensorsFile, BUNDLED_MODEL, createProgress } from 'maskgpu/node';
export async function segment(path: string): Promise<SegmentResult> {
  const model = await loadMaskRCNN(undefined as GPUDevice | undefined, await readSafetensorsFile(BUNDLED_MODEL), { boxScoreThresh: TORCHVISION_DEFAULTS.boxScoreThresh });
  createProgress({ label: 'x', total: 1 }).done();
  return model.segment(await readImageFile(path));
}
`,
  );
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const common = ['--noEmit', '--strict', '--target', 'es2022', '--typeRoots', join(root, 'node_modules', '@types'), '--types', 'node', 'use.ts'];
  await sh(process.execPath, [tsc, '--module', 'nodenext', '--moduleResolution', 'nodenext', ...common], app);
});

test.run();
