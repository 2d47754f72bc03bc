#!/usr/bin/env node
// Runs every tests/**/*.test.ts in its own Node process (a shader that crashes Dawn takes down
// only its own file, which is then counted as failed), streams the output, and ends with one
// line `N passed, N failed` for CI. Usage: node tests/run.mjs [file ...]
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const perFileTimeoutMs = Number(process.env.MASKGPU_TEST_TIMEOUT_MS ?? 600_000);

function findTests(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...findTests(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

function runFile(file) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, ['--import', './tools/register.mjs', file], {
      cwd: root,
      // Tests never read a tuned conv tile cache (tiles change speed only, but a test run should
      // not depend on what `npm run tune` left in ~/.cache): point the engine at an empty place.
      env: { ...process.env, NO_COLOR: '1', MASKGPU_CACHE_DIR: join(tmpdir(), `maskgpu-test-no-cache-${process.pid}`) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let text = '';
    const onData = (chunk) => {
      const s = chunk.toString();
      // Dawn prints two harmless limit notices on every device; keep the log readable.
      const shown = s.split('\n').filter((l) => !/^Warning: maxDynamic\w+ artificially reduced/.test(l)).join('\n');
      process.stdout.write(shown);
      text += s;
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const timer = setTimeout(() => {
      text += `\n[run] ${file} timed out after ${perFileTimeoutMs} ms\n`;
      child.kill('SIGKILL');
    }, perFileTimeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, text, ms: Date.now() - started });
    });
  });
}

const files = process.argv.length > 2 ? process.argv.slice(2).map((f) => join(root, f)) : findTests(join(root, 'tests'));
let passed = 0;
let failed = 0;
let skipped = 0;
const failures = [];
for (const file of files) {
  const name = relative(root, file);
  console.log(`\n=== ${name}`);
  const r = await runFile(file);
  const num = (label) => {
    const m = new RegExp(`^\\s*${label}:\\s+(\\d+)`, 'm').exec(r.text);
    return m ? Number(m[1]) : undefined;
  };
  const total = num('Total');
  const ok = num('Passed');
  const skip = num('Skipped') ?? 0;
  if (total === undefined || ok === undefined) {
    failed += 1;
    failures.push(`${name}: crashed before finishing (exit ${r.code ?? r.signal}); see its output above`);
    continue;
  }
  passed += ok;
  skipped += skip;
  let bad = total - ok - skip;
  if (bad === 0 && r.code !== 0) {
    bad = 1;
    failures.push(`${name}: every test passed but the process exited with ${r.code ?? r.signal}`);
  } else if (bad > 0) failures.push(`${name}: ${bad} failed`);
  failed += bad;
  console.log(`=== ${name}: ${ok}/${total} in ${(r.ms / 1000).toFixed(1)} s`);
}
if (failures.length) console.log(`\nFailures:\n  ${failures.join('\n  ')}`);
console.log(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 ? 1 : 0);
