// io/progress.ts: progress for long runs (Node only; the browser bundle must not import io/). On a
// terminal one line is redrawn in place (a bar, count, rate and ETA); when the output is not a
// terminal (CI logs, pipes) a plain line is printed at most every `intervalMs` and at the end, so
// logs stay short. Output goes to stderr by default, so stdout stays clean for JSON.

export interface ProgressOptions {
  /** What is being counted, e.g. 'segment' or 'eval'. */
  label: string;
  /** Units expected in all (0 or undefined: unknown, no bar or ETA). */
  total?: number;
  /** Default process.stderr. */
  stream?: NodeJS.WriteStream;
  /** Force the terminal (true) or plain-line (false) form; default: stream.isTTY. */
  tty?: boolean;
  /** Minimum time between plain lines (default 5000 ms). */
  intervalMs?: number;
  /** Suppress all output (e.g. --quiet, --json). */
  silent?: boolean;
}

export interface Progress {
  /** `n` more units done (default 1); `detail` (e.g. the file name) is shown with the line. */
  tick(n?: number, detail?: string): void;
  /** Ends the progress (clears the terminal line, or prints the final plain line). */
  done(detail?: string): void;
}

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** The text of one progress line (exported for tests). */
export function progressLine(label: string, done: number, total: number | undefined, elapsedMs: number, detail?: string, width = 24): string {
  const rate = elapsedMs > 0 ? done / (elapsedMs / 1000) : 0;
  const parts = [label];
  if (total) {
    const f = Math.min(1, done / total);
    const filled = Math.round(f * width);
    parts.push(`[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`, `${done}/${total}`, `${(100 * f).toFixed(0)}%`);
    const eta = done > 0 ? ((total - done) * elapsedMs) / done : NaN;
    parts.push(done >= total ? `in ${formatDuration(elapsedMs)}` : `ETA ${formatDuration(eta)}`);
  } else {
    parts.push(`${done}`, `in ${formatDuration(elapsedMs)}`);
  }
  if (rate > 0) parts.push(rate >= 1 ? `${rate.toFixed(1)}/s` : `${(1 / rate).toFixed(1)}s each`);
  if (detail) parts.push(detail);
  return parts.join(' ');
}

export function createProgress(options: ProgressOptions): Progress {
  const stream = options.stream ?? process.stderr;
  const tty = options.tty ?? !!stream.isTTY;
  const interval = options.intervalMs ?? 5000;
  const started = Date.now();
  let count = 0;
  let lastPrinted = -Infinity;
  let ended = false;
  const line = (detail?: string) => progressLine(options.label, count, options.total, Date.now() - started, detail);
  const show = (detail?: string, final = false) => {
    if (options.silent) return;
    if (tty) {
      const cols = stream.columns ?? 100;
      stream.write(`\r${line(detail).slice(0, cols - 1).padEnd(Math.min(cols - 1, 100))}${final ? '\n' : ''}`);
    } else if (final || Date.now() - lastPrinted >= interval) {
      stream.write(`${line(detail)}\n`);
      lastPrinted = Date.now();
    }
  };
  return {
    tick(n = 1, detail) {
      if (ended) return;
      count += n;
      show(detail, false);
    },
    done(detail) {
      if (ended) return;
      ended = true;
      show(detail, true);
    },
  };
}
