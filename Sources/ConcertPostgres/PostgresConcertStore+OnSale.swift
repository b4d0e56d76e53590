import ConcertDomain
import ConcertStore
import Synchronization
import Logging
import PostgresNIO

// MARK: - On-sale control

extension PostgresConcertStore {
    private static func storedPolicy(_ row: PostgresRow) throws -> StoredQueuePolicy {
        let (maxActive, rate, activeSeconds, paused, opensAt, seed, commitment, drawnAt, entrants) =
            try row.decode((Int64, Int64?, Int64, Bool, Int64?, String?, String?, Int64?, Int64?).self)
        let policy = LinePolicy(maxActive: Int(maxActive), admitPerMinute: rate.map(Int.init), activeSeconds: Int(activeSeconds),
                                paused: paused, queueOpensAt: opensAt.map(Timestamp.init(milliseconds:)))
        let draw = seed.flatMap { seed in commitment.map { commitment in
            DrawRecord(seedHex: seed, commitment: commitment, drawnAt: drawnAt.map(Timestamp.init(milliseconds:)),
                       entrants: entrants.map(Int.init))
        } }
        return StoredQueuePolicy(policy: policy, draw: draw)
    }

    public func queuePolicy(concertId: Int64) async throws -> StoredQueuePolicy? {
        try await rows("""
            SELECT max_active, admit_per_minute, active_seconds, paused, queue_opens_at, draw_seed, draw_commitment, drawn_at, entrants
            FROM queue_policies WHERE concert_id = \(concertId)
            """).first.map(Self.storedPolicy)
    }

    /// One statement (an upsert whose row lock orders racing changes).
    public func changeQueuePolicy(concertId: Int64, change: LinePolicyChange, defaults: LinePolicy, bookingOpensAt: Timestamp,
                                  newSeedHex: String, commitment: String) async throws -> StoredQueuePolicy {
        let fresh = change.applied(to: defaults)
        let freshSeed = fresh.queueOpensAt.map { $0 < bookingOpensAt } ?? false
        let setOpens = change.queueOpensAt != nil
        let rows = try await rows("""
            INSERT INTO queue_policies AS p (concert_id, max_active, admit_per_minute, active_seconds, paused, queue_opens_at,
                                             draw_seed, draw_commitment)
            SELECT \(concertId), \(Int64(fresh.maxActive)), \(fresh.admitPerMinute.map(Int64.init)), \(Int64(fresh.activeSeconds)),
                   \(fresh.paused), \(fresh.queueOpensAt?.milliseconds), \(freshSeed ? newSeedHex : nil), \(freshSeed ? commitment : nil)
            WHERE EXISTS (SELECT 1 FROM concerts WHERE id = \(concertId))
            ON CONFLICT (concert_id) DO UPDATE SET
              max_active = CASE WHEN \(change.maxActive != nil) THEN EXCLUDED.max_active ELSE p.max_active END,
              admit_per_minute = CASE WHEN \(change.admitPerMinute != nil) THEN EXCLUDED.admit_per_minute ELSE p.admit_per_minute END,
              active_seconds = CASE WHEN \(change.activeSeconds != nil) THEN EXCLUDED.active_seconds ELSE p.active_seconds END,
              paused = CASE WHEN \(change.paused != nil) THEN EXCLUDED.paused ELSE p.paused END,
              queue_opens_at = CASE WHEN \(setOpens) THEN EXCLUDED.queue_opens_at ELSE p.queue_opens_at END,
              draw_seed = COALESCE(p.draw_seed, CASE WHEN (CASE WHEN \(setOpens) THEN EXCLUDED.queue_opens_at ELSE p.queue_opens_at END)
                                                     < \(bookingOpensAt.milliseconds) THEN \(newSeedHex) END),
              draw_commitment = COALESCE(p.draw_commitment,
                                         CASE WHEN (CASE WHEN \(setOpens) THEN EXCLUDED.queue_opens_at ELSE p.queue_opens_at END)
                                                   < \(bookingOpensAt.milliseconds) THEN \(commitment) END)
            RETURNING max_active, admit_per_minute, active_seconds, paused, queue_opens_at, draw_seed, draw_commitment, drawn_at, entrants
            """)
        guard let row = rows.first else { throw DomainError.concertNotFound }
        return try Self.storedPolicy(row)
    }

    public func recordDraw(concertId: Int64, entrants: Int, at: Timestamp) async throws {
        _ = try await rows("""
            UPDATE queue_policies SET drawn_at = \(at.milliseconds), entrants = \(Int64(entrants))
            WHERE concert_id = \(concertId) AND drawn_at IS NULL
            """)
    }

    public func availability(concertId: Int64, now: Timestamp) async throws -> Availability {
        let t = now.milliseconds
        let rows = try await rows("""
            SELECT COALESCE(SUM(s.total_seats), 0)::bigint,
              COALESCE(SUM((SELECT COUNT(*) FROM reservations r WHERE r.schedule_id = s.id
                            AND (r.status = 'CONFIRMED' OR (r.status = 'HELD' AND r.held_until > \(t))))), 0)::bigint,
              COALESCE(SUM((SELECT COUNT(*) FROM reservations r WHERE r.schedule_id = s.id AND r.status = 'CONFIRMED')), 0)::bigint
            FROM schedules s WHERE s.concert_id = \(concertId) AND s.starts_at > \(t) AND s.cancelled_at IS NULL
            """)
        guard let row = rows.first else { return Availability(total: 0, available: 0, sold: 0) }
        let (total, taken, sold) = try row.decode((Int64, Int64, Int64).self)
        return Availability(total: Int(total), available: Int(total - taken), sold: Int(sold))
    }

    public func upcomingConcerts(now: Timestamp, after: Int64?, limit: Int) async throws -> ReservableConcertPage {
        let t = now.milliseconds
        let logger = self.logger
        return try await withConnection { connection in
            let concerts = try await connection.query("""
                SELECT \(unescaped: Columns.concert) FROM concerts c
                WHERE c.booking_closes_at > \(t) AND c.id > \(after ?? 0)
                  AND (c.booking_opens_at > \(t)
                       OR EXISTS (SELECT 1 FROM schedules s WHERE s.concert_id = c.id AND s.starts_at > \(t)))
                ORDER BY c.id LIMIT \(limit)
                """, logger: logger).collect().map(Self.concert)
            var changesAt: Int64?
            for try await value in try await connection.query("""
                SELECT LEAST(
                  (SELECT MIN(booking_opens_at) FROM concerts WHERE booking_opens_at > \(t)),
                  (SELECT MIN(booking_closes_at) FROM concerts WHERE booking_closes_at > \(t)),
                  (SELECT MIN(starts_at) FROM schedules WHERE starts_at > \(t)))
                """, logger: logger).decode(Int64?.self) {
                changesAt = value
            }
            return ReservableConcertPage(concerts: concerts, changesAt: changesAt.map(Timestamp.init(milliseconds:)))
        }
    }
}
