import ConcertDomain
import ConcertStore
import Foundation
import GRDB

/// The wallet, payments, refunds and idempotency keys of `SQLiteConcertStore`, each in one
/// write transaction (SQLite has one writer at a time).
extension SQLiteConcertStore {
    // MARK: Wallet

    public func balance(userId: Int64) async throws -> Int64 {
        try await read { db in
            try Int64.fetchOne(db, sql: "SELECT balance FROM users WHERE id = ?", arguments: [userId]) ?? 0
        }
    }

    public func charge(userId: Int64, amount: Int64, now: Timestamp, rules: BookingRules,
                       idempotency: IdempotentCompletion<Int64>?) async throws -> Int64 {
        try await write { db in
            try db.execute(sql: "INSERT INTO users (id) VALUES (?) ON CONFLICT (id) DO NOTHING", arguments: [userId])
            let balance = try Int64.fetchOne(db, sql: "SELECT balance FROM users WHERE id = ?", arguments: [userId]) ?? 0
            try WalletPolicy.checkCharge(amount: amount, balance: balance, rules: rules)
            let after = balance + amount
            try db.execute(sql: "UPDATE users SET balance = ? WHERE id = ?", arguments: [after, userId])
            try db.execute(sql: """
                INSERT INTO point_entries (user_id, type, amount, balance_after, created_at) VALUES (?, 'CHARGE', ?, ?, ?)
                """, arguments: [userId, amount, after, now.milliseconds])
            if let idempotency { try Self.complete(db, idempotency, with: after) }
            return after
        }
    }

    public func history(userId: Int64) async throws -> [PointEntry] {
        try await read { db in
            try Row.fetchAll(db, sql: """
                SELECT id, type, amount, balance_after, created_at FROM point_entries WHERE user_id = ? ORDER BY id DESC
                """, arguments: [userId]).map { row in
                PointEntry(id: row[0], type: PointEntryType(rawValue: row[1]) ?? .charge, amount: row[2],
                           balanceAfter: row[3], createdAt: Timestamp(milliseconds: row[4]))
            }
        }
    }

    // MARK: Payments

    public func pay(userId: Int64, reservationId: Int64, now: Timestamp,
                    idempotency: IdempotentCompletion<PaymentReceipt>?) async throws -> PaymentReceipt {
        try await write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT \(Columns.reservation) FROM reservations WHERE id = ? AND user_id = ?",
                                             arguments: [reservationId, userId]) else { throw DomainError.reservationNotFound }
            let reservation = Self.reservation(row)
            try HoldPolicy.checkPayable(reservation, now: now)
            // A live hold on a cancelled schedule cannot exist (the cancel released it in the same
            // transaction); kept as a guard like PostgreSQL's `concertd_pay`.
            guard try Int.fetchOne(db, sql: "SELECT 1 FROM schedules WHERE id = ? AND cancelled_at IS NULL",
                                   arguments: [reservation.scheduleId]) != nil else { throw DomainError.reservationNotHeld }
            let balance = try Int64.fetchOne(db, sql: "SELECT balance FROM users WHERE id = ?", arguments: [userId]) ?? 0
            try WalletPolicy.checkPayment(price: reservation.price, balance: balance)
            let after = balance - reservation.price
            try db.execute(sql: "UPDATE users SET balance = ? WHERE id = ?", arguments: [after, userId])
            try db.execute(sql: """
                INSERT INTO point_entries (user_id, type, amount, balance_after, created_at) VALUES (?, 'PAYMENT', ?, ?, ?)
                """, arguments: [userId, -reservation.price, after, now.milliseconds])
            try db.execute(sql: "UPDATE reservations SET status = 'CONFIRMED' WHERE id = ?", arguments: [reservationId])
            try db.execute(sql: "INSERT INTO payments (user_id, reservation_id, amount, paid_at) VALUES (?, ?, ?, ?)",
                           arguments: [userId, reservationId, reservation.price, now.milliseconds])
            let payment = Payment(id: db.lastInsertedRowID, userId: userId, reservationId: reservationId,
                                  amount: reservation.price, paidAt: now)
            let receipt = PaymentReceipt(payment: payment, balance: after, concertId: reservation.concertId)
            if let idempotency { try Self.complete(db, idempotency, with: receipt) }
            return receipt
        }
    }

    public func payment(id: Int64, userId: Int64) async throws -> Payment? {
        try await read { db in
            try Row.fetchOne(db, sql: """
                SELECT id, user_id, reservation_id, amount, paid_at, status, refunded_at FROM payments WHERE id = ? AND user_id = ?
                """, arguments: [id, userId]).map(Self.payment)
        }
    }

    // MARK: Refunds and cancelled dates

    public func refund(userId: Int64, paymentId: Int64, now: Timestamp, rules: BookingRules,
                       idempotency: IdempotentCompletion<RefundReceipt>?) async throws -> RefundReceipt {
        try await write { db in
            guard let row = try Row.fetchOne(db, sql: """
                SELECT p.id, p.user_id, p.reservation_id, p.amount, p.paid_at, p.status, p.refunded_at,
                  r.schedule_id, r.concert_id, s.starts_at
                FROM payments p JOIN reservations r ON r.id = p.reservation_id JOIN schedules s ON s.id = r.schedule_id
                WHERE p.id = ? AND p.user_id = ?
                """, arguments: [paymentId, userId]) else { throw DomainError.paymentNotFound }
            let payment = Self.payment(row)
            let scheduleId: Int64 = row[7], concertId: Int64 = row[8]
            try RefundPolicy.checkRefundable(payment, startsAt: Timestamp(milliseconds: row[9]), now: now, rules: rules)
            let (entryId, balance) = try Self.giveBack(db, payment, now: now)
            let receipt = RefundReceipt(entryId: entryId, paymentId: payment.id, reservationId: payment.reservationId,
                                        amount: payment.amount, refundedAt: now, balance: balance,
                                        scheduleId: scheduleId, concertId: concertId)
            if let idempotency { try Self.complete(db, idempotency, with: receipt) }
            return receipt
        }
    }

    public func cancelSchedule(id: Int64, now: Timestamp) async throws -> ScheduleCancellation {
        try await write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT concert_id, cancelled_at FROM schedules WHERE id = ?", arguments: [id]) else {
                throw DomainError.scheduleNotFound
            }
            let concertId: Int64 = row[0], cancelledAt: Int64? = row[1]
            guard cancelledAt == nil else { return ScheduleCancellation(scheduleId: id, concertId: concertId, refunded: 0, released: 0) }
            try db.execute(sql: "UPDATE schedules SET cancelled_at = ? WHERE id = ?", arguments: [now.milliseconds, id])
            let paid = try Row.fetchAll(db, sql: """
                SELECT p.id, p.user_id, p.reservation_id, p.amount, p.paid_at, p.status, p.refunded_at
                FROM payments p JOIN reservations r ON r.id = p.reservation_id
                WHERE r.schedule_id = ? AND p.status = 'PAID' ORDER BY p.user_id, p.id
                """, arguments: [id]).map(Self.payment)
            for payment in paid { _ = try Self.giveBack(db, payment, now: now) }
            try db.execute(sql: """
                UPDATE reservations SET status = 'CANCELLED' WHERE schedule_id = ? AND status = 'HELD' AND held_until > ?
                """, arguments: [id, now.milliseconds])
            return ScheduleCancellation(scheduleId: id, concertId: concertId, refunded: paid.count, released: db.changesCount)
        }
    }

    /// The writes of one refund: the payment REFUNDED, its reservation CANCELLED, the points back
    /// (no cap) and the REFUND entry. Returns the entry's id and the balance after.
    private static func giveBack(_ db: Database, _ payment: Payment, now: Timestamp) throws -> (entryId: Int64, balance: Int64) {
        try db.execute(sql: "UPDATE payments SET status = 'REFUNDED', refunded_at = ? WHERE id = ?",
                       arguments: [now.milliseconds, payment.id])
        try db.execute(sql: "UPDATE reservations SET status = 'CANCELLED' WHERE id = ?", arguments: [payment.reservationId])
        guard let after = try Int64.fetchOne(db, sql: "UPDATE users SET balance = balance + ? WHERE id = ? RETURNING balance",
                                             arguments: [payment.amount, payment.userId]) else {
            throw DomainError.paymentNotFound
        }
        try db.execute(sql: """
            INSERT INTO point_entries (user_id, type, amount, balance_after, created_at, payment_id) VALUES (?, 'REFUND', ?, ?, ?, ?)
            """, arguments: [payment.userId, payment.amount, after, now.milliseconds, payment.id])
        return (db.lastInsertedRowID, after)
    }

    // MARK: Idempotency

    public func claim(userId: Int64, key: String, fingerprint: String, now: Timestamp,
                      leaseMilliseconds: Int64, retentionMilliseconds: Int64) async throws -> IdempotencyClaim {
        try await write { db in
            let t = now.milliseconds
            if let row = try Row.fetchOne(db, sql: """
                SELECT fingerprint, state, response_status, response_body, created_at
                FROM idempotency_keys WHERE user_id = ? AND key = ?
                """, arguments: [userId, key]) {
                let createdAt: Int64 = row[4]
                if createdAt + retentionMilliseconds > t {
                    let stored = StoredIdempotency(fingerprint: row[0], state: row[1], status: row[2], body: row[3], createdAt: createdAt)
                    if let decided = stored.decide(fingerprint: fingerprint, now: t, leaseMilliseconds: leaseMilliseconds) {
                        return decided
                    }
                }
                try db.execute(sql: """
                    UPDATE idempotency_keys SET fingerprint = ?, state = 'RUNNING', response_status = NULL,
                      response_body = NULL, created_at = ? WHERE user_id = ? AND key = ?
                    """, arguments: [fingerprint, t, userId, key])
                return .proceed
            }
            try db.execute(sql: """
                INSERT INTO idempotency_keys (user_id, key, fingerprint, state, created_at) VALUES (?, ?, ?, 'RUNNING', ?)
                """, arguments: [userId, key, fingerprint, t])
            return .proceed
        }
    }

    public func purgeIdempotencyKeys(claimedBefore cutoff: Timestamp) async throws -> Int {
        try await write { db in
            try db.execute(sql: "DELETE FROM idempotency_keys WHERE created_at < ?", arguments: [cutoff.milliseconds])
            return db.changesCount
        }
    }

    public func release(userId: Int64, key: String, claimedAt: Timestamp) async throws {
        try await write { db in
            try db.execute(sql: """
                DELETE FROM idempotency_keys WHERE user_id = ? AND key = ? AND state = 'RUNNING' AND created_at = ?
                """, arguments: [userId, key, claimedAt.milliseconds])
        }
    }

    private static func complete<R>(_ db: Database, _ completion: IdempotentCompletion<R>, with result: R) throws {
        let response = try completion.render(result)
        try db.execute(sql: """
            UPDATE idempotency_keys SET state = 'DONE', response_status = ?, response_body = ?
            WHERE user_id = ? AND key = ? AND state = 'RUNNING' AND created_at = ?
            """, arguments: [response.status, Data(response.body), completion.userId, completion.key, completion.claimedAt.milliseconds])
        guard db.changesCount == 1 else { throw DomainError.idempotencyKeyInUse }
    }
}
