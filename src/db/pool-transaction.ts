import type pg from "pg";

/**
 * Runs `run` in one transaction on a client of `pool`: begin, then commit, or rollback when it throws (the
 * error is rethrown). `advisoryLock`, when given, is taken with `pg_advisory_xact_lock` first, so
 * transactions on the same key run one after another and release it at their end.
 */
export async function inPoolTransaction<T>(
  pool: pg.Pool,
  run: (c: pg.PoolClient) => Promise<T>,
  advisoryLock?: number,
): Promise<T> {
  const c = await pool.connect();
  try {
    await c.query("begin");
    if (advisoryLock !== undefined) await c.query("select pg_advisory_xact_lock($1)", [advisoryLock]);
    const out = await run(c);
    await c.query("commit");
    return out;
  } catch (e) {
    await c.query("rollback").catch(() => undefined);
    throw e;
  } finally {
    c.release();
  }
}
