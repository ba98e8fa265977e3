/**
 * BENCH_SMOKE=1: every bench runs once with the fewest iterations that still go through each step (the
 * suite's smoke run, test/bench/smoke.test.ts): it proves each bench works, its figures mean nothing.
 */
export const SMOKE = process.env.BENCH_SMOKE === "1";

/** `full` normally, `smoke` in a smoke run. */
export const iterations = (full: number, smoke = 1): number => (SMOKE ? smoke : full);
