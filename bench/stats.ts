// Summaries of benchmark samples: every sample is kept, and a target is checked against the
// percentile DESIGN.md names (the median for latencies of the plugin, the 90th percentile for
// the agent's event latencies), never against whichever figure happens to look best.

/**
 * The `q` quantile of `xs` by nearest rank (the smallest sample with at least a fraction `q`
 * of the samples at or below it); NaN for no samples.
 *
 * @example
 * quantile([5, 1, 3, 2, 4], 0.9); // 5
 */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

/**
 * The median of `xs` (the mean of the two middle samples for an even count).
 *
 * @example
 * median([4, 1, 3, 2]); // 2.5
 */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Median, 90th percentile and maximum of a set of samples. */
export interface Spread {
  readonly n: number;
  readonly median: number;
  readonly p90: number;
  readonly max: number;
}

/**
 * The spread of `xs`.
 *
 * @example
 * spread([10, 20, 30]); // { n: 3, median: 20, p90: 30, max: 30 }
 */
export function spread(xs: readonly number[]): Spread {
  return { n: xs.length, median: median(xs), p90: quantile(xs, 0.9), max: Math.max(...xs) };
}

/**
 * One line of text for a {@linkcode Spread}, each figure rounded to `digits`.
 *
 * @example
 * spreadText(spread([10, 20, 30]), "ms"); // "median 20, p90 30, max 30 ms (n 3)"
 */
export function spreadText(s: Spread, unit: string, digits = 0): string {
  const f = (x: number) => x.toFixed(digits);
  return `median ${f(s.median)}, p90 ${f(s.p90)}, max ${f(s.max)} ${unit} (n ${s.n})`;
}
