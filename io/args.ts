// io/args.ts: the one command-line parser of maskgpu's CLI (bin/) and of its scripts (bench/,
// experiments/, tools/), on Node's util.parseArgs (Node only; the browser bundle must not import
// io/). Options are declared once with their type (boolean, string, repeatable string, number),
// default and allowed values, and come back typed. Parsing is strict: an unknown option, a
// missing or malformed value, a value given to a flag or a stray positional argument is a
// UsageError that names the option as typed and points at `<command> --help`. `--help` / `-h`
// anywhere before `--` asks for the usage text instead (every command has it).
//
//   const SPEC = { command: 'maskgpu eval', options: { limit: { type: 'number', integer: true, min: 1 } } } as const;
//   const parsed = parseCommandLine(argv, SPEC); // undefined: --help was asked for
//   parsed.values.limit; // number | undefined

import { parseArgs } from 'node:util';

/** A bad command line: the message names the option and where the usage is. */
export class UsageError extends Error {
  override name = 'UsageError';
}

interface Common {
  /** One-letter alias (`-v`). */
  short?: string;
}
export interface BooleanOption extends Common {
  type: 'boolean';
}
export interface StringOption extends Common {
  type: 'string';
  default?: string;
  /** The allowed values; anything else is a UsageError. */
  choices?: readonly string[];
  required?: boolean;
}
/** A string option that may be repeated (`--include a --include b`); always an array. */
export interface StringListOption extends Common {
  type: 'strings';
}
/** A finite number, optionally an integer and within bounds (min/max inclusive, above/below exclusive). */
export interface NumberOption extends Common {
  type: 'number';
  default?: number;
  integer?: boolean;
  min?: number;
  max?: number;
  above?: number;
  below?: number;
  required?: boolean;
}
export type OptionSpec = BooleanOption | StringOption | StringListOption | NumberOption;
export type OptionSpecs = Readonly<Record<string, OptionSpec>>;

type Present<O, T> = O extends { default: unknown } | { required: true } ? T : T | undefined;
type ValueOf<O> = O extends BooleanOption
  ? boolean
  : O extends StringListOption
    ? string[]
    : O extends NumberOption
      ? Present<O, number>
      : O extends { choices: readonly (infer C extends string)[] }
        ? Present<O, C>
        : Present<O, string>;
/** The parsed values, keyed by the options' long names (`values['score-thresh']`). */
export type OptionValues<S extends OptionSpecs> = { -readonly [K in keyof S]: ValueOf<S[K]> };

export interface CommandLine<S extends OptionSpecs> {
  /** How the command is run, for messages: 'maskgpu segment', 'npm run bench --'. */
  command: string;
  options: S;
  /** What positional arguments are (e.g. 'IMAGE'); without it none are accepted. */
  positionals?: string;
}

export interface ParsedCommandLine<S extends OptionSpecs> {
  values: OptionValues<S>;
  positionals: string[];
}

const HELP = new Set(['--help', '-h']);

/** Whether `--help` or `-h` comes before any `--` (then the command prints its usage and does nothing else). */
export function wantsHelp(argv: readonly string[]): boolean {
  for (const a of argv) {
    if (a === '--') return false;
    if (HELP.has(a)) return true;
  }
  return false;
}

function describeNumber(o: NumberOption): string {
  const kind = o.integer ? 'integer' : 'number';
  const lo = o.min !== undefined ? { v: o.min, open: false } : o.above !== undefined ? { v: o.above, open: true } : undefined;
  const hi = o.max !== undefined ? { v: o.max, open: false } : o.below !== undefined ? { v: o.below, open: true } : undefined;
  if (lo && hi) return `a ${kind} in ${lo.open ? '(' : '['}${lo.v}, ${hi.v}${hi.open ? ')' : ']'}`;
  if (lo && lo.v === 0) return `a ${lo.open ? 'positive' : 'non-negative'} ${kind}`;
  if (lo && o.integer && lo.v === 1 && !lo.open) return 'a positive integer';
  if (lo) return `a ${kind} ${lo.open ? '>' : '>='} ${lo.v}`;
  if (hi) return `a ${kind} ${hi.open ? '<' : '<='} ${hi.v}`;
  return o.integer ? 'an integer' : 'a number';
}

function parseNumber(flag: string, o: NumberOption, s: string, fail: (m: string) => never): number {
  const n = Number(s);
  const ok =
    s.trim() !== '' &&
    Number.isFinite(n) &&
    (!o.integer || Number.isInteger(n)) &&
    (o.min === undefined || n >= o.min) &&
    (o.max === undefined || n <= o.max) &&
    (o.above === undefined || n > o.above) &&
    (o.below === undefined || n < o.below);
  if (!ok) fail(`${flag} needs ${describeNumber(o)}, got '${s}'`);
  return n;
}

/**
 * Parses `argv` (without the node and script paths) against `spec`. Returns undefined when
 * `--help` / `-h` was given (the caller prints its usage); throws a UsageError on anything the
 * spec does not allow.
 */
export function parseCommandLine<const S extends OptionSpecs>(argv: readonly string[], spec: CommandLine<S>): ParsedCommandLine<S> | undefined {
  if (wantsHelp(argv)) return undefined;
  const fail = (message: string): never => {
    throw new UsageError(`${message} (${spec.command} --help)`);
  };
  const nodeOptions: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {};
  for (const [name, o] of Object.entries(spec.options)) {
    nodeOptions[name] = { type: o.type === 'boolean' ? 'boolean' : 'string', ...(o.short ? { short: o.short } : {}), ...(o.type === 'strings' ? { multiple: true } : {}) };
  }
  // Tokens, not parseArgs' own strict mode: the checks below are as strict, but every error can
  // name the option as the user typed it, and a negative number is accepted as a number's value.
  const { tokens } = parseArgs({ args: [...argv], options: nodeOptions, strict: false, allowPositionals: true, tokens: true });
  const values: Record<string, unknown> = {};
  const positionals: string[] = [];
  for (const [name, o] of Object.entries(spec.options)) {
    if (o.type === 'boolean') values[name] = false;
    else if (o.type === 'strings') values[name] = [];
    else if (o.default !== undefined) values[name] = o.default;
  }
  for (const t of tokens) {
    if (t.kind === 'option-terminator') continue;
    if (t.kind === 'positional') {
      if (!spec.positionals) fail(`unexpected argument '${t.value}'`);
      positionals.push(t.value);
      continue;
    }
    const o = spec.options[t.name] as OptionSpec | undefined;
    if (!o) fail(`unknown option '${t.rawName}'`);
    const option = o as OptionSpec;
    if (option.type === 'boolean') {
      if (t.value !== undefined) fail(`${t.rawName} takes no value, got '${t.rawName}=${t.value}'`);
      values[t.name] = true;
      continue;
    }
    const v = t.value;
    const numeric = option.type === 'number' && v !== undefined && v.trim() !== '' && Number.isFinite(Number(v));
    if (v === undefined || (!t.inlineValue && v.length > 1 && v.startsWith('-') && !numeric)) {
      fail(`${t.rawName} needs a value${v === undefined || v.startsWith('--') ? '' : `; one that starts with '-' is written ${t.rawName}=${v}`}`);
    }
    const value = v as string;
    if (option.type === 'strings') (values[t.name] as string[]).push(value);
    else if (option.type === 'number') values[t.name] = parseNumber(t.rawName, option, value, fail);
    else {
      if (option.choices && !option.choices.includes(value)) fail(`${t.rawName} is '${value}': use one of ${option.choices.join(', ')}`);
      values[t.name] = value;
    }
  }
  for (const [name, o] of Object.entries(spec.options)) {
    if ((o.type === 'string' || o.type === 'number') && o.required && values[name] === undefined) fail(`--${name} is required`);
  }
  return { values: values as OptionValues<S>, positionals };
}

/**
 * parseCommandLine for a script's own command line (process.argv): prints `usage` and exits 0 on
 * `--help`; prints `<command>: <error>` (to stderr) and exits 2 on a usage error.
 */
export function parseScriptArgs<const S extends OptionSpecs>(spec: CommandLine<S> & { usage: string }, argv: readonly string[] = process.argv.slice(2)): ParsedCommandLine<S> {
  try {
    const parsed = parseCommandLine(argv, spec);
    if (parsed) return parsed;
    console.log(spec.usage);
    process.exit(0);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`${spec.command.replace(/ --$/, '')}: ${e.message}`);
    process.exit(2);
  }
}
