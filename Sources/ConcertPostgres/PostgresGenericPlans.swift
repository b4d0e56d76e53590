/// Migration 12: the functions that take one array per field of their batch (holds, queue polls
/// and ends) always run their statements on cached generic plans.
///
/// PL/pgSQL caches a plan per statement and connection, but for a statement with parameters it
/// plans afresh with the values ("custom" plans) for the first five runs and then keeps doing so
/// whenever those looked cheaper than the generic plan. With the batch arrays as the values that
/// depends on how full the first batches of each connection were: a connection that began while
/// the service was quiet (batches of one to three) planned the poll batch's main statement again on
/// every call, 0.35 ms of the call's 0.9 ms (`pg_stat_statements` with `track_planning`), and
/// kept doing so however busy it got. The generic plan is the same plan (index lookups by key; the
/// arrays' length does not change its shape), so it is forced for these three functions.
/// pgbench, 10,000 waiters, 2 connections: batches of 3 polls 1,913–2,106 calls/s before,
/// 3,379–3,734 after; batches of 15, 1,800–1,918 before, 1,945–2,293 after.
///
/// A function-level `SET` restores only its own setting on exit, so the `synchronous_commit` that
/// the queue functions turn off for their own transaction with `set_config(..., true)` stays off
/// until the commit (`PostgresBatchTests` checks that too).
enum PostgresGenericPlans {
    static let functions = [
        "concertd_queue_poll_many(TEXT[], BIGINT[], BIGINT[], BIGINT[], BIGINT[], BIGINT[], BIGINT[])",
        "concertd_queue_end_many(TEXT[], BIGINT[], BIGINT[], BIGINT[], BIGINT[], BIGINT[], BIGINT[])",
        "concertd_hold(BIGINT[], BIGINT[], BIGINT[], BIGINT[], BIGINT[], BIGINT[], BIGINT[], BIGINT[])",
    ]

    static let statements: [String] = functions.map { "ALTER FUNCTION \($0) SET plan_cache_mode = force_generic_plan" }
}
