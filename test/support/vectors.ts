/**
 * `n` random unit vectors of `dim` values, row-major, the same for a given seed on every run
 * (Park-Miller LCG).
 */
export function unitVectors(n: number, dim: number, seed = 1): Float32Array {
  let s = seed;
  const rand = () => {
    s = (s * 16807) % 2147483647;
    return (s / 2147483647) * 2 - 1;
  };
  const out = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) {
    let norm = 0;
    for (let j = 0; j < dim; j++) {
      const v = rand();
      out[i * dim + j] = v;
      norm += v * v;
    }
    for (let j = 0; j < dim; j++) out[i * dim + j] = (out[i * dim + j] as number) / Math.sqrt(norm);
  }
  return out;
}
