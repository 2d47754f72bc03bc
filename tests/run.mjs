#!/usr/bin/env node
// Runs every tests/**/*.test.ts in its own Node process (a shader that crashes Dawn takes down
// only its own file, which is then counted as failed), streams the output, and ends with one
// line `N passed, N failed` (then `, N skipped` when tests were skipped) for CI.
// Usage: node tests/run.mjs [file ...]   (files relative to the repository root, any name)
// With CI set (not "0"/"false"), a test file that uses `.only` fails the run.
// The counting is in tests/runner-counts.mjs; importing this file runs nothing.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { combine, countFile, isCi, summaryLine } from './runner-counts.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const perFileTimeoutMs = Number(process.env.MASKGPU_TEST_TIMEOUT_MS ?? 600_000);

export function findTests(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...findTests(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

export function runFile(file) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, ['--import', './tools/register.mjs', file], {
      cwd: root,
      // No environment tricks: the library reads no cache file on its own (a tuned conv tile
      // table reaches a GpuContext only when the caller passes it, as the CLI does).
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // uvu prints its summary on stdout; only stdout is parsed, so nothing on stderr can split it.
    let stdout = '';
    let timedOut = false;
    const onData = (chunk) => {
      const s = chunk.toString();
      // Dawn prints two harmless limit notices on every device; keep the log readable.
      const shown = s.split('\n').filter((l) => !/^Warning: maxDynamic\w+ artificially reduced/.test(l)).join('\n');
      process.stdout.write(shown);
      return s;
    };
    child.stdout.on('data', (chunk) => { stdout += onData(chunk); });
    child.stderr.on('data', onData);
    const timer = setTimeout(() => {
      timedOut = true;
      process.stdout.write(`\n[run] ${file} timed out after ${perFileTimeoutMs} ms\n`);
      child.kill('SIGKILL');
    }, perFileTimeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, timedOut, ms: Date.now() - started });
    });
  });
}

async function main(args) {
  const ci = isCi(process.env);
  const files = args.length > 0 ? args.map((f) => resolve(root, f)) : findTests(join(root, 'tests'));
  const results = [];
  for (const file of files) {
    const name = relative(root, file);
    console.log(`\n=== ${name}`);
    if (!existsSync(file)) {
      console.log(`=== ${name}: no such file`);
      results.push({ name, passed: 0, failed: 1, skipped: 0, only: false, problems: [`${name}: no such file`] });
      continue;
    }
    const r = await runFile(file);
    const result = countFile({ name, stdout: r.stdout, code: r.code, signal: r.signal, timedOut: r.timedOut, source: readFileSync(file, 'utf8'), ci });
    results.push(result);
    const skip = result.skipped ? `, ${result.skipped} skipped` : '';
    const verdict = result.problems.length ? ' FAILED' : '';
    console.log(`=== ${name}: ${result.passed}/${result.total}${skip} in ${(r.ms / 1000).toFixed(1)} s${verdict}`);
  }
  const all = combine(results);
  if (all.skippedFiles.length) console.log(`\nSkipped tests:\n  ${all.skippedFiles.join('\n  ')}`);
  if (all.onlyFiles.length && !ci) console.log(`\nFiles using .only (would fail with CI set):\n  ${all.onlyFiles.join('\n  ')}`);
  if (all.problems.length) console.log(`\nFailures:\n  ${all.problems.join('\n  ')}`);
  console.log(`\n${summaryLine(all)}`);
  return all.ok ? 0 : 1;
}

/** True when this module is the script Node was asked to run. */
function executedDirectly() {
  if (!process.argv[1]) return false;
  try {
    return realpathSync(resolve(process.argv[1])) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

// Run only when executed (`node tests/run.mjs`), not when imported.
if (executedDirectly()) process.exit(await main(process.argv.slice(2)));
