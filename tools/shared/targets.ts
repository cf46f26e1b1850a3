/**
 * Retrieval targets for the default model through the service: precision@10 per dataset.
 * The service must also at least equal the model used directly (same preprocessing, exact search).
 */
export const P10_TARGETS: Readonly<Record<string, number>> = {
  neu_det: 0.99,
  // Raised from 0.97 to 0.98 when the adapted space came in.
  xsdd: 0.98,
  magnetic_tile: 0.85,
};

/** `0.912 (>= 0.97 ✗)`: a measured value next to its lower-bound target. */
export function againstMin(value: number, target: number | undefined, digits = 3): string {
  if (target === undefined) return value.toFixed(digits);
  return `${value.toFixed(digits)} (≥ ${target} ${value >= target ? "✓" : "✗"})`;
}

/** `61.2 (<= 50 ✗)`: a measured value next to its upper-bound target. */
export function againstMax(value: number, target: number, digits = 1): string {
  if (!Number.isFinite(value)) return `n/a (≤ ${target})`;
  return `${value.toFixed(digits)} (≤ ${target} ${value <= target ? "✓" : "✗"})`;
}
