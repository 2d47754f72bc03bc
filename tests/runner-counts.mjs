// The counting behind tests/run.mjs, kept pure so tests/runner.test.ts can check it on captured
// uvu output. One test file -> countFile(); every file -> combine(); the last line -> summaryLine().
//
// What uvu 0.5 prints (node_modules/uvu/dist/index.mjs, exec()) once every queued suite has run:
//
//     Total:     N    tests that ran: `test.skip` tests are NOT in it, and when a suite has a
//                     `test.only` only its `.only` tests are
//     Passed:    N    tests that ran and passed, so failed = Total - Passed
//     Skipped:   N    `test.skip` calls, plus every non-`.only` test of a suite that has a `.only`
//     Duration:  ...
//
// uvu says nothing else about `.only`, so it is found by scanning the file's source (usesOnly).
// A file whose top level awaits between two `.run()` calls gets one such block per batch of suites,
// each counting only its own tests, so the blocks are summed.

/** Values of CI that mean "not CI". */
const NOT_CI = new Set(['', '0', 'false']);

/** True when the environment says this is a CI run (CI set, non-empty, not "0" or "false"). */
export function isCi(env) {
  const v = env.CI;
  return v !== undefined && !NOT_CI.has(v.trim().toLowerCase());
}

/** True when a test file's source calls `.only(` (test.only, suite.only, ...). */
export function usesOnly(source) {
  return /\.only\(/.test(source);
}

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/g;
const BLOCK = /^[ \t]*Total:[ \t]+(\d+)[ \t]*\r?\n[ \t]*Passed:[ \t]+(\d+)[ \t]*\r?\n[ \t]*Skipped:[ \t]+(\d+)/gm;

/** Every uvu summary block in a file's stdout, in order: [{ total, passed, skipped }]. */
export function parseUvuSummaries(stdout) {
  const text = stdout.replace(ANSI, '');
  return [...text.matchAll(BLOCK)].map((m) => ({ total: Number(m[1]), passed: Number(m[2]), skipped: Number(m[3]) }));
}

/**
 * One test file's result from its stdout and how its process ended.
 *   name: the file as shown in messages; stdout: what uvu printed; code/signal: how the process
 *   exited; timedOut: the runner killed it; source: the file's text (for `.only`), or undefined;
 *   ci: whether `.only` fails the file.
 * Returns { name, passed, failed, skipped, total, only, problems }: every count is a non-negative
 * integer, and a file with any problem has failed >= 1 (a file that went wrong but whose tests
 * all passed counts as one failure, so the last line never says 0 failed for a red run).
 */
export function countFile({ name, stdout, code, signal = null, timedOut = false, source, ci = false }) {
  const exit = code ?? signal ?? 'unknown';
  const only = source !== undefined && usesOnly(source);
  const problems = [];
  const blocks = parseUvuSummaries(stdout);
  let total = 0;
  let passed = 0;
  let skipped = 0;
  let failed = 0;
  if (blocks.length === 0) {
    problems.push(timedOut
      ? `${name}: timed out before finishing (killed, ${exit}); see its output above`
      : `${name}: crashed before finishing (exit ${exit}); see its output above`);
  } else {
    for (const b of blocks) {
      total += b.total;
      skipped += b.skipped;
      if (b.passed > b.total) {
        // Cannot happen with uvu as it is; if it ever does, trust neither number.
        problems.push(`${name}: inconsistent uvu summary (Passed ${b.passed} > Total ${b.total})`);
        passed += b.total;
      } else passed += b.passed;
    }
    failed = total - passed;
    if (failed > 0) problems.push(`${name}: ${failed} failed`);
    if (code !== 0) {
      if (timedOut) problems.push(`${name}: timed out after printing its summary (killed, ${exit})`);
      else if (failed === 0) problems.push(`${name}: every test passed but the process exited with ${exit}`);
    }
  }
  if (only && ci) problems.push(`${name}: uses .only (CI is set, so a focused test file fails the run; remove the .only)`);
  if (problems.length > 0 && failed === 0) failed = 1;
  return { name, passed, failed, skipped, total, only, problems };
}

/**
 * All files' results together: { passed, failed, skipped, problems, skippedFiles, onlyFiles, ok }.
 * skippedFiles: 'name: N skipped' for each file with skipped tests; onlyFiles: the names of files
 * that use `.only` (a warning outside CI, already a problem inside it); ok: nothing failed.
 */
export function combine(results) {
  const out = { passed: 0, failed: 0, skipped: 0, problems: [], skippedFiles: [], onlyFiles: [], ok: true };
  for (const r of results) {
    let bad = false;
    for (const [key, v] of [['passed', r.passed], ['failed', r.failed], ['skipped', r.skipped]]) {
      if (Number.isInteger(v) && v >= 0) out[key] += v;
      else {
        // countFile never does this; a hand-made result might. The file counts as failed.
        out.problems.push(`${r.name}: bad ${key} count ${v}`);
        bad = true;
      }
    }
    out.problems.push(...r.problems);
    const counted = Number.isInteger(r.failed) && r.failed > 0;
    if ((bad || r.problems.length > 0) && !counted) out.failed += 1;
    if (r.skipped > 0) out.skippedFiles.push(`${r.name}: ${r.skipped} skipped`);
    if (r.only) out.onlyFiles.push(r.name);
  }
  out.ok = out.failed === 0 && out.problems.length === 0;
  return out;
}

/** The runner's last line: `N passed, N failed`, then `, N skipped` when any were skipped. */
export function summaryLine({ passed, failed, skipped }) {
  return `${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`;
}
