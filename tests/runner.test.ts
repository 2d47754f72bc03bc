// The test runner counts honestly: tests/runner-counts.mjs on uvu output captured from the fixtures
// in tests/fixtures/runner/, then `node tests/run.mjs <fixture>` end to end (exit code and last line).
// uvu's `Total:` already leaves out `test.skip` tests, so failed = Total - Passed; the runner used to
// subtract the skipped ones again and printed `0 passed, -1 failed, 2 skipped` with exit 0.
// (This file never spells the focus call out, so a CI run does not flag it as a focused file.)

import * as assert from 'uvu/assert';
import { suite } from 'uvu';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { combine, countFile, isCi, parseUvuSummaries, summaryLine, usesOnly, type FileResult } from './runner-counts.mjs';

const ONLY = '.' + 'only(';

// What uvu 0.5.6 printed on stdout (NO_COLOR=1) for each fixture, run by itself.
const FAIL_AND_SKIPS = `✘   (0 / 1)

   FAIL  "fails on purpose"
    Expected values to be strictly equal:  (is)

        ++3    (Expected)
        --2    (Actual)

    at assert (file:///work/main/node_modules/uvu/assert/index.mjs:33:8)



  Total:     1
  Passed:    0
  Skipped:   2
  Duration:  1.72ms

`;
const PASS_AND_SKIP = '• •   (2 / 2)\n\n  Total:     2\n  Passed:    2\n  Skipped:   1\n  Duration:  3.31ms\n\n';
const FOCUSED = '•   (1 / 1)\n\n  Total:     1\n  Passed:    1\n  Skipped:   1\n  Duration:  0.76ms\n\n';
// A file whose top level awaits between two `.run()` calls: one summary block per batch.
const TWO_BLOCKS = ` a  •   (1 / 1)

  Total:     1
  Passed:    1
  Skipped:   0
  Duration:  0.80ms

 b  ✘   (0 / 1)

   FAIL  b  "b1"
    x

  Total:     1
  Passed:    0
  Skipped:   1
  Duration:  1.25ms

`;

const counts = suite('runner counts');

counts('uvu summary: Total excludes skipped tests, so 1 failing + 2 skipped is Total 1, Passed 0, Skipped 2', () => {
  assert.equal(parseUvuSummaries(FAIL_AND_SKIPS), [{ total: 1, passed: 0, skipped: 2 }]);
  assert.equal(parseUvuSummaries(PASS_AND_SKIP), [{ total: 2, passed: 2, skipped: 1 }]);
  assert.equal(parseUvuSummaries('no summary here\n'), []);
  // Coloured output (FORCE_COLOR=1, as kleur writes it) parses the same.
  const coloured = '\n  Total:     1\u001b[31m\n  Passed:    0\u001b[39m\n  Skipped:   \u001b[33m2\u001b[39m\n  Duration:  2.25ms\n\n';
  assert.equal(parseUvuSummaries(coloured), [{ total: 1, passed: 0, skipped: 2 }]);
});

counts('1 failing + 2 skipped: 0 passed, 1 failed, 2 skipped, and the run fails', () => {
  const r = countFile({ name: 'f.ts', stdout: FAIL_AND_SKIPS, code: 1 });
  assert.is(r.passed, 0);
  assert.is(r.failed, 1);
  assert.is(r.skipped, 2);
  const all = combine([r]);
  assert.is(summaryLine(all), '0 passed, 1 failed, 2 skipped');
  assert.not.ok(all.ok);
  assert.equal(all.skippedFiles, ['f.ts: 2 skipped']);
});

counts('all passing with a skip: counted, listed, and the run passes', () => {
  const r = countFile({ name: 'p.ts', stdout: PASS_AND_SKIP, code: 0 });
  assert.equal([r.passed, r.failed, r.skipped, r.problems], [2, 0, 1, []]);
  const all = combine([r]);
  assert.ok(all.ok);
  assert.is(summaryLine(all), '2 passed, 0 failed, 1 skipped');
  assert.equal(all.skippedFiles, ['p.ts: 1 skipped']);
  assert.is(summaryLine({ passed: 5, failed: 0, skipped: 0 }), '5 passed, 0 failed');
});

counts('files add up, and several summary blocks in one file are summed', () => {
  const two = countFile({ name: 'two.ts', stdout: TWO_BLOCKS, code: 1 });
  assert.equal([two.passed, two.failed, two.skipped, two.total], [1, 1, 1, 2]);
  const all = combine([two, countFile({ name: 'p.ts', stdout: PASS_AND_SKIP, code: 0 }), countFile({ name: 'f.ts', stdout: FAIL_AND_SKIPS, code: 1 })]);
  assert.is(summaryLine(all), '3 passed, 2 failed, 4 skipped');
  assert.equal(all.skippedFiles, ['two.ts: 1 skipped', 'p.ts: 1 skipped', 'f.ts: 2 skipped']);
});

counts('a crash (no summary) and a timeout count as one failed file', () => {
  const crash = countFile({ name: 'c.ts', stdout: 'file:///c.ts:6\nthrow new Error("boom");\n', code: 1 });
  assert.equal([crash.passed, crash.failed, crash.skipped], [0, 1, 0]);
  assert.match(crash.problems.join('\n'), /c\.ts: crashed before finishing \(exit 1\)/);
  const killed = countFile({ name: 't.ts', stdout: '• ', code: null, signal: 'SIGKILL', timedOut: true });
  assert.is(killed.failed, 1);
  assert.match(killed.problems.join('\n'), /t\.ts: timed out/);
  assert.is(summaryLine(combine([crash, killed])), '0 passed, 2 failed');
});

counts('every test passed but the process exited non-zero (or by a signal): one failure', () => {
  const r = countFile({ name: 'x.ts', stdout: PASS_AND_SKIP, code: 1 });
  assert.equal([r.passed, r.failed, r.skipped], [2, 1, 1]);
  assert.match(r.problems.join('\n'), /x\.ts: every test passed but the process exited with 1/);
  const s = countFile({ name: 's.ts', stdout: PASS_AND_SKIP, code: null, signal: 'SIGSEGV' });
  assert.is(s.failed, 1);
  assert.match(s.problems.join('\n'), /exited with SIGSEGV/);
});

counts('no count goes negative: an inconsistent summary or a bad hand-made count fails that file', () => {
  const r = countFile({ name: 'odd.ts', stdout: '  Total:     1\n  Passed:    3\n  Skipped:   0\n', code: 0 });
  assert.ok(r.passed >= 0 && r.failed >= 1 && r.skipped >= 0, JSON.stringify(r));
  assert.match(r.problems.join('\n'), /odd\.ts: inconsistent uvu summary/);
  const bad: FileResult = { name: 'neg.ts', passed: 0, failed: -1, skipped: 2, only: false, problems: [] };
  const all = combine([bad]);
  assert.is(summaryLine(all), '0 passed, 1 failed, 2 skipped');
  assert.not.ok(all.ok);
  assert.match(all.problems.join('\n'), /neg\.ts: bad failed count -1/);
});

counts('a focused file: uvu only reports the other tests as skipped; the source scan finds it, and CI fails it', () => {
  const source = `test${ONLY}'focused', () => {});\ntest('other', () => {});\n`;
  assert.ok(usesOnly(source));
  assert.ok(usesOnly(`const s = suite('s');\ns${ONLY}'x', () => {});`));
  assert.not.ok(usesOnly("test('only this', () => {}); // the only test"));
  const local = countFile({ name: 'o.ts', stdout: FOCUSED, code: 0, source, ci: false });
  assert.equal([local.passed, local.failed, local.skipped, local.only, local.problems], [1, 0, 1, true, []]);
  assert.equal(combine([local]).onlyFiles, ['o.ts']);
  assert.ok(combine([local]).ok);
  const onCi = countFile({ name: 'o.ts', stdout: FOCUSED, code: 0, source, ci: true });
  assert.is(onCi.failed, 1);
  assert.match(onCi.problems.join('\n'), /o\.ts: uses \.only/);
  assert.not.ok(combine([onCi]).ok);
});

counts('CI means set, non-empty, not "0" or "false"', () => {
  assert.not.ok(isCi({}));
  assert.not.ok(isCi({ CI: '' }));
  assert.not.ok(isCi({ CI: '0' }));
  assert.not.ok(isCi({ CI: 'false' }));
  assert.not.ok(isCi({ CI: 'FALSE' }));
  assert.ok(isCi({ CI: '1' }));
  assert.ok(isCi({ CI: 'true' }));
});

counts.run();

const e2e = suite('node tests/run.mjs on fixtures');
const root = fileURLToPath(new URL('..', import.meta.url));
const fixture = (name: string) => `tests/fixtures/runner/${name}.ts`;

/** Runs the runner on `files` with CI set to `ci` (or removed): its exit code and last line. */
function runRunner(files: string[], ci: string | undefined): { code: number | null; last: string; out: string } {
  const env = { ...process.env };
  if (ci === undefined) delete env.CI;
  else env.CI = ci;
  const r = spawnSync(process.execPath, ['tests/run.mjs', ...files], { cwd: root, env, encoding: 'utf8', timeout: 120_000 });
  const out = `${r.stdout}${r.stderr}`;
  return { code: r.status, last: r.stdout.trimEnd().split('\n').at(-1) ?? '', out };
}
// The runner's output in one line, so its uvu summaries never start a line of this file's output.
const shown = (out: string) => JSON.stringify(out.slice(-1500));

e2e('1 failing + 2 skipped: exit 1, `0 passed, 1 failed, 2 skipped`, the file listed as skipping', () => {
  const r = runRunner([fixture('fail-and-skips')], undefined);
  assert.is(r.code, 1, shown(r.out));
  assert.is(r.last, '0 passed, 1 failed, 2 skipped', shown(r.out));
  assert.ok(r.out.includes('tests/fixtures/runner/fail-and-skips.ts: 2 skipped'), shown(r.out));
});

e2e('all passing with a skip: exit 0, `2 passed, 0 failed, 1 skipped`', () => {
  const r = runRunner([fixture('pass-and-skip')], undefined);
  assert.is(r.code, 0, shown(r.out));
  assert.is(r.last, '2 passed, 0 failed, 1 skipped', shown(r.out));
});

e2e('a focused file fails the run with CI=1 (naming it) and passes without CI', () => {
  const onCi = runRunner([fixture('only')], '1');
  assert.is(onCi.code, 1, shown(onCi.out));
  assert.ok(/tests\/fixtures\/runner\/only\.ts: uses \.only/.test(onCi.out), shown(onCi.out));
  assert.is(onCi.last, '1 passed, 1 failed, 1 skipped', shown(onCi.out));
  const local = runRunner([fixture('only')], undefined);
  assert.is(local.code, 0, shown(local.out));
  assert.is(local.last, '1 passed, 0 failed, 1 skipped', shown(local.out));
  const ciOff = runRunner([fixture('only')], 'false');
  assert.is(ciOff.code, 0, shown(ciOff.out));
});

e2e('a file that throws at top level counts as failed', () => {
  const r = runRunner([fixture('crash')], undefined);
  assert.is(r.code, 1, shown(r.out));
  assert.is(r.last, '0 passed, 1 failed', shown(r.out));
  assert.ok(r.out.includes('tests/fixtures/runner/crash.ts: crashed before finishing'), shown(r.out));
});

e2e('several files in one run add up', () => {
  const r = runRunner([fixture('pass-and-skip'), fixture('fail-and-skips'), fixture('crash')], undefined);
  assert.is(r.code, 1, shown(r.out));
  assert.is(r.last, '2 passed, 2 failed, 3 skipped', shown(r.out));
});

e2e.run();
