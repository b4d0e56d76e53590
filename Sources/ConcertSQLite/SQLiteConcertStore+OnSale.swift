import ConcertDomain
import ConcertStore
import Foundation
import GRDB

// MARK: - On-sale control

extension SQLiteConcertStore {
    private static let policyColumns = """
        max_active, admit_per_minute, active_seconds, paused, queue_opens_at, draw_seed, draw_commitment, drawn_at, entrants
        """

    private static func storedPolicy(_ row: Row) -> StoredQueuePolicy {
        let opensAt: Int64? = row[4]
        let policy = LinePolicy(maxActive: row[0], admitPerMinute: row[1], activeSeconds: row[2], paused: (row[3] as Int) != 0,
                                queueOpensAt: opensAt.map(Timestamp.init(milliseconds:)))
        let seed: String? = row[5], commitment: String? = row[6], drawnAt: Int64? = row[7], entrants: Int? = row[8]
        let draw = seed.flatMap { seed in commitment.map { commitment in
            DrawRecord(seedHex: seed, commitment: commitment, drawnAt: drawnAt.map(Timestamp.init(milliseconds:)), entrants: entrants)
        } }
        return StoredQueuePolicy(policy: policy, draw: draw)
    }

    public func queuePolicy(concertId: Int64) async throws -> StoredQueuePolicy? {
        try await read { db in
            try Row.fetchOne(db, sql: "SELECT \(Self.policyColumns) FROM queue_policies WHERE concert_id = ?",
                             arguments: [concertId]).map(Self.storedPolicy)
        }
    }

    public func changeQueuePolicy(concertId: Int64, change: LinePolicyChange, defaults: LinePolicy, bookingOpensAt: Timestamp,
                                  newSeedHex: String, commitment: String) async throws -> StoredQueuePolicy {
        let fresh = change.applied(to: defaults)
        let freshSeed = fresh.queueOpensAt.map { $0 < bookingOpensAt } ?? false
        let opens = "(CASE WHEN ? THEN excluded.queue_opens_at ELSE queue_policies.queue_opens_at END)"
        return try await write { db in
            guard try Int.fetchOne(db, sql: "SELECT 1 FROM concerts WHERE id = ?", arguments: [concertId]) != nil else {
                throw DomainError.concertNotFound
            }
            try db.execute(sql: """
                INSERT INTO queue_policies (concert_id, max_active, admit_per_minute, active_seconds, paused, queue_opens_at,
                                            draw_seed, draw_commitment)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (concert_id) DO UPDATE SET
                  max_active = CASE WHEN ? THEN excluded.max_active ELSE queue_policies.max_active END,
                  admit_per_minute = CASE WHEN ? THEN excluded.admit_per_minute ELSE queue_policies.admit_per_minute END,
                  active_seconds = CASE WHEN ? THEN excluded.active_seconds ELSE queue_policies.active_seconds END,
                  paused = CASE WHEN ? THEN excluded.paused ELSE queue_policies.paused END,
                  queue_opens_at = \(opens),
                  draw_seed = COALESCE(queue_policies.draw_seed, CASE WHEN \(opens) < ? THEN ? END),
                  draw_commitment = COALESCE(queue_policies.draw_commitment, CASE WHEN \(opens) < ? THEN ? END)
                """, arguments: [
                    concertId, fresh.maxActive, fresh.admitPerMinute, fresh.activeSeconds, fresh.paused ? 1 : 0,
                    fresh.queueOpensAt?.milliseconds, freshSeed ? newSeedHex : nil, freshSeed ? commitment : nil,
                    change.maxActive != nil, change.admitPerMinute != nil, change.activeSeconds != nil, change.paused != nil,
                    change.queueOpensAt != nil,
                    change.queueOpensAt != nil, bookingOpensAt.milliseconds, newSeedHex,
                    change.queueOpensAt != nil, bookingOpensAt.milliseconds, commitment,
                ])
            let row = try Row.fetchOne(db, sql: "SELECT \(Self.policyColumns) FROM queue_policies WHERE concert_id = ?",
                                       arguments: [concertId])!
            return Self.storedPolicy(row)
        }
    }

    public func recordDraw(concertId: Int64, entrants: Int, at: Timestamp) async throws {
        try await write { db in
            try db.execute(sql: """
                UPDATE queue_policies SET drawn_at = ?, entrants = ? WHERE concert_id = ? AND drawn_at IS NULL
                """, arguments: [at.milliseconds, entrants, concertId])
        }
    }

    public func availability(concertId: Int64, now: Timestamp) async throws -> Availability {
        try await read { db in
            let row = try Row.fetchOne(db, sql: """
                SELECT COALESCE(SUM(s.total_seats), 0),
                  COALESCE(SUM((SELECT COUNT(*) FROM reservations r WHERE r.schedule_id = s.id
                                AND (r.status = 'CONFIRMED' OR (r.status = 'HELD' AND r.held_until > ?)))), 0),
                  COALESCE(SUM((SELECT COUNT(*) FROM reservations r WHERE r.schedule_id = s.id AND r.status = 'CONFIRMED')), 0)
                FROM schedules s WHERE s.concert_id = ? AND s.starts_at > ? AND s.cancelled_at IS NULL
                """, arguments: [now.milliseconds, concertId, now.milliseconds])
            let total: Int = row?[0] ?? 0, taken: Int = row?[1] ?? 0, sold: Int = row?[2] ?? 0
            return Availability(total: total, available: total - taken, sold: sold)
        }
    }

    public func upcomingConcerts(now: Timestamp, after: Int64?, limit: Int) async throws -> ReservableConcertPage {
        let t = now.milliseconds
        return try await read { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT \(Columns.concert) FROM concerts c
                WHERE c.booking_closes_at > ? AND c.id > ?
                  AND (c.booking_opens_at > ?
                       OR EXISTS (SELECT 1 FROM schedules s WHERE s.concert_id = c.id AND s.starts_at > ?))
                ORDER BY c.id LIMIT ?
                """, arguments: [t, after ?? 0, t, t, limit])
            let changesAt = try Int64.fetchOne(db, sql: """
                SELECT MIN(x) FROM (
                  SELECT MIN(booking_opens_at) AS x FROM concerts WHERE booking_opens_at > ?
                  UNION ALL SELECT MIN(booking_closes_at) FROM concerts WHERE booking_closes_at > ?
                  UNION ALL SELECT MIN(starts_at) FROM schedules WHERE starts_at > ?)
                """, arguments: [t, t, t])
            return ReservableConcertPage(concerts: rows.map(Self.concert), changesAt: changesAt.map(Timestamp.init(milliseconds:)))
        }
    }
}
