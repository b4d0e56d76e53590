import ConcertDomain
import ConcertStore
import PostgresNIO

/// Webhooks on PostgreSQL, for any number of instances: each write is one statement (one round
/// trip); fan-out and claims take rows with `FOR UPDATE SKIP LOCKED`, so two relays never work
/// on the same event or delivery at once, and a delivery's lease (`lease_until`) lets another
/// instance take it over when the relay that claimed it died (`kill -9`) before recording it.
extension PostgresConcertStore {
    public func createWebhook(url: String, events: [String], secret: String, now: Timestamp) async throws -> Webhook {
        let joined = events.joined(separator: ",")
        let id = try await first("""
            INSERT INTO webhooks (url, events, secret, created_at) VALUES (\(url), \(joined), \(secret), \(now.milliseconds))
            RETURNING id
            """, as: Int64.self)
        guard let id else { throw PostgresStoreError("INSERT INTO webhooks returned no id") }
        return Webhook(id: id, url: url, events: events, secret: secret, createdAt: now)
    }

    public func webhooks() async throws -> [Webhook] {
        try await rows("SELECT id, url, events, secret, created_at FROM webhooks ORDER BY id").map { row in
            let (id, url, events, secret, createdAt) = try row.decode((Int64, String, String, String, Int64).self)
            return Webhook(id: id, url: url, events: events.split(separator: ",").map(String.init), secret: secret,
                           createdAt: Timestamp(milliseconds: createdAt))
        }
    }

    public func deleteWebhook(id: Int64) async throws -> Bool {
        // The deliveries go with it (ON DELETE CASCADE).
        try await first("DELETE FROM webhooks WHERE id = \(id) RETURNING id", as: Int64.self) != nil
    }

    public func dispatchWebhookEvents(now: Timestamp, limit: Int) async throws -> Int {
        let t = now.milliseconds
        return Int(try await first("""
            WITH batch AS (
              SELECT id, type, reservation_id FROM webhook_events WHERE NOT dispatched ORDER BY id LIMIT \(limit)
              FOR UPDATE SKIP LOCKED
            ), marked AS (
              UPDATE webhook_events e SET dispatched = true FROM batch WHERE e.id = batch.id RETURNING e.id
            ), fanned AS (
              INSERT INTO webhook_deliveries (webhook_id, event_id, reservation_id, next_attempt_at, created_at)
              SELECT w.id, b.id, b.reservation_id, \(t), \(t) FROM batch b
              JOIN webhooks w ON (',' || w.events || ',') LIKE ('%,' || b.type || ',%')
              ORDER BY b.id, w.id
              ON CONFLICT DO NOTHING RETURNING 1
            )
            SELECT (SELECT COUNT(*) FROM marked) + 0 * (SELECT COUNT(*) FROM fanned)
            """, as: Int64.self) ?? 0)
    }

    public func claimWebhookDeliveries(now: Timestamp, leaseMilliseconds: Int64, limit: Int) async throws -> [WebhookDelivery] {
        let t = now.milliseconds, lease = now.milliseconds + leaseMilliseconds
        return try await rows("""
            WITH due AS (
              SELECT d.id FROM webhook_deliveries d
              WHERE d.state = 'PENDING' AND d.next_attempt_at <= \(t) AND (d.lease_until IS NULL OR d.lease_until <= \(t))
                AND (d.reservation_id IS NULL OR (
                  NOT EXISTS (SELECT 1 FROM webhook_deliveries x WHERE x.webhook_id = d.webhook_id
                              AND x.reservation_id = d.reservation_id AND x.state = 'PENDING' AND x.event_id < d.event_id)
                  AND NOT EXISTS (SELECT 1 FROM webhook_events o WHERE NOT o.dispatched
                                  AND o.reservation_id = d.reservation_id AND o.id < d.event_id)))
              ORDER BY d.next_attempt_at, d.event_id, d.id LIMIT \(limit)
              FOR UPDATE OF d SKIP LOCKED
            )
            UPDATE webhook_deliveries d SET lease_until = \(lease)
            FROM due, webhooks w, webhook_events e
            WHERE d.id = due.id AND w.id = d.webhook_id AND e.id = d.event_id
            RETURNING d.id, d.webhook_id, d.event_id, w.url, w.secret, e.type, e.data, e.occurred_at, d.attempts, d.created_at
            """).map { row in
            let (id, webhookId, eventId, url, secret, type, data, occurredAt, attempts, createdAt) =
                try row.decode((Int64, Int64, Int64, String, String, String, String, Int64, Int, Int64).self)
            return WebhookDelivery(id: id, webhookId: webhookId, eventId: eventId, url: url, secret: secret, type: type, data: data,
                                   occurredAt: Timestamp(milliseconds: occurredAt), attempts: attempts,
                                   createdAt: Timestamp(milliseconds: createdAt), leaseUntil: Timestamp(milliseconds: lease))
        }.sorted { $0.id < $1.id }
    }

    public func recordWebhookAttempt(_ delivery: WebhookDelivery, outcome: WebhookAttemptOutcome, now: Timestamp) async throws {
        let c = outcome.columns(now: now)
        _ = try await rows("""
            UPDATE webhook_deliveries SET state = \(c.state), attempts = attempts + 1, next_attempt_at = \(c.nextAttemptAt),
              lease_until = NULL, last_status = \(c.status), last_error = \(c.error), delivered_at = \(c.deliveredAt)
            WHERE id = \(delivery.id) AND state = 'PENDING' AND lease_until = \(delivery.leaseUntil.milliseconds)
            """)
    }

    public func webhookBacklog() async throws -> WebhookBacklog {
        guard let row = try await rows("""
            SELECT (SELECT COUNT(*) FROM webhook_events WHERE NOT dispatched),
                   (SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'PENDING'),
                   LEAST((SELECT MIN(occurred_at) FROM webhook_events WHERE NOT dispatched),
                         (SELECT MIN(created_at) FROM webhook_deliveries WHERE state = 'PENDING'))
            """).first else { return WebhookBacklog(undispatchedEvents: 0, pendingDeliveries: 0, oldest: nil) }
        let (events, deliveries, oldest) = try row.decode((Int64, Int64, Int64?).self)
        return WebhookBacklog(undispatchedEvents: Int(events), pendingDeliveries: Int(deliveries),
                              oldest: oldest.map(Timestamp.init(milliseconds:)))
    }

    public func recentWebhookDeliveries(limit: Int) async throws -> [WebhookDeliveryRecord] {
        try await rows("""
            SELECT d.id, d.webhook_id, d.event_id, e.type, d.state, d.attempts, d.last_status, d.last_error, d.created_at, d.delivered_at
            FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id ORDER BY d.id DESC LIMIT \(limit)
            """).map { row in
            let (id, webhookId, eventId, type, state, attempts, lastStatus, lastError, createdAt, deliveredAt) =
                try row.decode((Int64, Int64, Int64, String, String, Int, Int?, String?, Int64, Int64?).self)
            return WebhookDeliveryRecord(id: id, webhookId: webhookId, eventId: eventId, type: type, state: state, attempts: attempts,
                                         lastStatus: lastStatus, lastError: lastError, createdAt: Timestamp(milliseconds: createdAt),
                                         deliveredAt: deliveredAt.map(Timestamp.init(milliseconds:)))
        }
    }

    public func expireRunOutHolds(now: Timestamp, limit: Int) async throws -> Int {
        Int(try await first("""
            WITH expired AS (
              UPDATE reservations SET status = 'EXPIRED' WHERE id IN (
                SELECT id FROM reservations WHERE status = 'HELD' AND held_until <= \(now.milliseconds)
                ORDER BY held_until LIMIT \(limit) FOR UPDATE SKIP LOCKED)
              AND status = 'HELD'
              RETURNING 1)
            SELECT COUNT(*) FROM expired
            """, as: Int64.self) ?? 0)
    }

    public func pruneWebhookEvents(before: Timestamp, limit: Int) async throws -> Int {
        let cutoff = before.milliseconds
        // One statement: lock the batch (skipping what another instance's sweep holds), then its
        // finished deliveries, then the events. A delivery an operator set PENDING again meanwhile
        // keeps its event (the delete of the event then fails on the foreign key, and the next
        // sweep skips it).
        return Int(try await first("""
            WITH batch AS (
              SELECT e.id FROM webhook_events e
              WHERE e.occurred_at < \(cutoff) AND e.dispatched
                AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id
                                AND (d.state = 'PENDING' OR COALESCE(d.delivered_at, d.next_attempt_at) >= \(cutoff)))
              ORDER BY e.occurred_at LIMIT \(limit)
              FOR UPDATE SKIP LOCKED
            ), deliveries AS (
              DELETE FROM webhook_deliveries d USING batch WHERE d.event_id = batch.id AND d.state <> 'PENDING' RETURNING 1
            ), events AS (
              DELETE FROM webhook_events e USING batch WHERE e.id = batch.id RETURNING 1
            )
            SELECT (SELECT COUNT(*) FROM events) + 0 * (SELECT COUNT(*) FROM deliveries)
            """, as: Int64.self) ?? 0)
    }
}
