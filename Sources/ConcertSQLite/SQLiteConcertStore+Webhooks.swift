import ConcertDomain
import ConcertStore
import GRDB

/// Webhooks on SQLite. Each write closure runs alone (one writer per process, the file lock
/// across processes), so claims need no row locks: a claim's lease alone keeps a second relay
/// (another process on the same file) off a delivery in flight. The relay polls several times a
/// second on every instance, so each poll first looks with a read (WAL: no lock) and takes the
/// writer only when there is something to do.
extension SQLiteConcertStore {
    public func createWebhook(url: String, events: [String], secret: String, now: Timestamp) async throws -> Webhook {
        try await write { db in
            try db.execute(sql: "INSERT INTO webhooks (url, events, secret, created_at) VALUES (?, ?, ?, ?)",
                           arguments: [url, events.joined(separator: ","), secret, now.milliseconds])
            return Webhook(id: db.lastInsertedRowID, url: url, events: events, secret: secret, createdAt: now)
        }
    }

    public func webhooks() async throws -> [Webhook] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT id, url, events, secret, created_at FROM webhooks ORDER BY id").map { row in
                let events: String = row[2]
                return Webhook(id: row[0], url: row[1], events: events.split(separator: ",").map(String.init), secret: row[3],
                               createdAt: Timestamp(milliseconds: row[4]))
            }
        }
    }

    public func deleteWebhook(id: Int64) async throws -> Bool {
        try await write { db in
            try db.execute(sql: "DELETE FROM webhook_deliveries WHERE webhook_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM webhooks WHERE id = ?", arguments: [id])
            return db.changesCount > 0
        }
    }

    public func dispatchWebhookEvents(now: Timestamp, limit: Int) async throws -> Int {
        guard try await read({ db in try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM webhook_events WHERE dispatched = 0)") ?? false })
        else { return 0 }
        return try await write { db in
            let ids = try Int64.fetchAll(db, sql: "SELECT id FROM webhook_events WHERE dispatched = 0 ORDER BY id LIMIT ?",
                                         arguments: [limit])
            guard let first = ids.first, let last = ids.last else { return 0 }
            try db.execute(sql: """
                INSERT OR IGNORE INTO webhook_deliveries (webhook_id, event_id, reservation_id, next_attempt_at, created_at)
                SELECT w.id, e.id, e.reservation_id, ?, ? FROM webhook_events e
                JOIN webhooks w ON (',' || w.events || ',') LIKE ('%,' || e.type || ',%')
                WHERE e.dispatched = 0 AND e.id BETWEEN ? AND ? ORDER BY e.id, w.id
                """, arguments: [now.milliseconds, now.milliseconds, first, last])
            try db.execute(sql: "UPDATE webhook_events SET dispatched = 1 WHERE dispatched = 0 AND id BETWEEN ? AND ?",
                           arguments: [first, last])
            return ids.count
        }
    }

    public func claimWebhookDeliveries(now: Timestamp, leaseMilliseconds: Int64, limit: Int) async throws -> [WebhookDelivery] {
        let t = now.milliseconds, lease = now.milliseconds + leaseMilliseconds
        guard try await read({ db in
            try Bool.fetchOne(db, sql: """
                SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE state = 'PENDING' AND next_attempt_at <= ?
                               AND (lease_until IS NULL OR lease_until <= ?))
                """, arguments: [t, t]) ?? false
        }) else { return [] }
        return try await write { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT d.id, d.webhook_id, d.event_id, w.url, w.secret, e.type, e.data, e.occurred_at, d.attempts, d.created_at
                FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id JOIN webhook_events e ON e.id = d.event_id
                WHERE d.state = 'PENDING' AND d.next_attempt_at <= ? AND (d.lease_until IS NULL OR d.lease_until <= ?)
                  AND (d.reservation_id IS NULL OR (
                    NOT EXISTS (SELECT 1 FROM webhook_deliveries x WHERE x.webhook_id = d.webhook_id
                                AND x.reservation_id = d.reservation_id AND x.state = 'PENDING' AND x.event_id < d.event_id)
                    AND NOT EXISTS (SELECT 1 FROM webhook_events o WHERE o.dispatched = 0
                                    AND o.reservation_id = d.reservation_id AND o.id < d.event_id)))
                ORDER BY d.next_attempt_at, d.event_id, d.id LIMIT ?
                """, arguments: [t, t, limit])
            var claimed: [WebhookDelivery] = []
            for row in rows {
                let id: Int64 = row[0]
                try db.execute(sql: "UPDATE webhook_deliveries SET lease_until = ? WHERE id = ?", arguments: [lease, id])
                claimed.append(WebhookDelivery(
                    id: id, webhookId: row[1], eventId: row[2], url: row[3], secret: row[4], type: row[5], data: row[6],
                    occurredAt: Timestamp(milliseconds: row[7]), attempts: row[8], createdAt: Timestamp(milliseconds: row[9]),
                    leaseUntil: Timestamp(milliseconds: lease)))
            }
            return claimed
        }
    }

    public func recordWebhookAttempt(_ delivery: WebhookDelivery, outcome: WebhookAttemptOutcome, now: Timestamp) async throws {
        let c = outcome.columns(now: now)
        try await write { db in
            try db.execute(sql: """
                UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1, next_attempt_at = ?, lease_until = NULL,
                  last_status = ?, last_error = ?, delivered_at = ?
                WHERE id = ? AND state = 'PENDING' AND lease_until = ?
                """, arguments: [c.state, c.nextAttemptAt, c.status, c.error, c.deliveredAt, delivery.id, delivery.leaseUntil.milliseconds])
        }
    }

    public func webhookBacklog() async throws -> WebhookBacklog {
        try await read { db in
            let row = try Row.fetchOne(db, sql: """
                SELECT (SELECT COUNT(*) FROM webhook_events WHERE dispatched = 0),
                       (SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'PENDING'),
                       (SELECT MIN(occurred_at) FROM webhook_events WHERE dispatched = 0),
                       (SELECT MIN(created_at) FROM webhook_deliveries WHERE state = 'PENDING')
                """)!
            let a: Int64? = row[2], b: Int64? = row[3]
            let oldest = [a, b].compactMap { $0 }.min()
            return WebhookBacklog(undispatchedEvents: row[0], pendingDeliveries: row[1], oldest: oldest.map(Timestamp.init(milliseconds:)))
        }
    }

    public func recentWebhookDeliveries(limit: Int) async throws -> [WebhookDeliveryRecord] {
        try await read { db in
            try Row.fetchAll(db, sql: """
                SELECT d.id, d.webhook_id, d.event_id, e.type, d.state, d.attempts, d.last_status, d.last_error, d.created_at, d.delivered_at
                FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id ORDER BY d.id DESC LIMIT ?
                """, arguments: [limit]).map { row in
                let delivered: Int64? = row[9]
                return WebhookDeliveryRecord(id: row[0], webhookId: row[1], eventId: row[2], type: row[3], state: row[4], attempts: row[5],
                                             lastStatus: row[6], lastError: row[7], createdAt: Timestamp(milliseconds: row[8]),
                                             deliveredAt: delivered.map(Timestamp.init(milliseconds:)))
            }
        }
    }

    public func expireRunOutHolds(now: Timestamp, limit: Int) async throws -> Int {
        guard try await read({ db in
            try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM reservations WHERE status = 'HELD' AND held_until <= ?)",
                              arguments: [now.milliseconds]) ?? false
        }) else { return 0 }
        return try await write { db in
            try db.execute(sql: """
                UPDATE reservations SET status = 'EXPIRED' WHERE id IN (
                  SELECT id FROM reservations WHERE status = 'HELD' AND held_until <= ? ORDER BY held_until LIMIT ?)
                """, arguments: [now.milliseconds, limit])
            return db.changesCount
        }
    }

    public func pruneWebhookEvents(before: Timestamp, limit: Int) async throws -> Int {
        let cutoff = before.milliseconds
        guard try await read({ db in
            try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM webhook_events WHERE occurred_at < ? AND dispatched = 1)",
                              arguments: [cutoff]) ?? false
        }) else { return 0 }
        return try await write { db in
            let ids = try Int64.fetchAll(db, sql: """
                SELECT e.id FROM webhook_events e
                WHERE e.occurred_at < ? AND e.dispatched = 1
                  AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id
                                  AND (d.state = 'PENDING' OR COALESCE(d.delivered_at, d.next_attempt_at) >= ?))
                ORDER BY e.occurred_at LIMIT ?
                """, arguments: [cutoff, cutoff, limit])
            guard !ids.isEmpty else { return 0 }
            let list = ids.map(String.init).joined(separator: ",")
            try db.execute(sql: "DELETE FROM webhook_deliveries WHERE event_id IN (\(list))")
            try db.execute(sql: "DELETE FROM webhook_events WHERE id IN (\(list))")
            return db.changesCount
        }
    }
}
