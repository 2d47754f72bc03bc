// Types for tests/runner-counts.mjs (the test runner's pure counting; see that file).

export interface UvuSummary { total: number; passed: number; skipped: number }

export interface FileResult {
  name: string;
  passed: number;
  failed: number;
  skipped: number;
  /** Tests uvu ran (its `Total:`, summed over summary blocks); absent on hand-made results. */
  total?: number;
  /** The file's source calls `.only(`. */
  only: boolean;
  /** One line per thing that went wrong; any problem means failed >= 1. */
  problems: string[];
}

export interface RunTotals {
  passed: number;
  failed: number;
  skipped: number;
  problems: string[];
  /** `name: N skipped` for each file with skipped tests. */
  skippedFiles: string[];
  /** Files that use `.only`. */
  onlyFiles: string[];
  /** Nothing failed and nothing went wrong. */
  ok: boolean;
}

/** CI is set, non-empty and not "0"/"false". */
export function isCi(env: Record<string, string | undefined>): boolean;
/** The source calls `.only(`. */
export function usesOnly(source: string): boolean;
/** Every uvu summary block (Total/Passed/Skipped) in a file's stdout, in order. */
export function parseUvuSummaries(stdout: string): UvuSummary[];
/** One test file's counts from its stdout and how its process ended. */
export function countFile(file: {
  name: string;
  stdout: string;
  code: number | null;
  signal?: string | null;
  timedOut?: boolean;
  source?: string;
  ci?: boolean;
}): FileResult & { total: number };
/** All files together. */
export function combine(results: FileResult[]): RunTotals;
/** `N passed, N failed`, then `, N skipped` when any were skipped. */
export function summaryLine(totals: { passed: number; failed: number; skipped: number }): string;
