import Batching
import ConcertDomain
import ConcertStore
import Synchronization
import Logging
import PostgresNIO

/// The wallet, payments, refunds and idempotency keys of `PostgresConcertStore`: each write is one
/// call of a migration's function (`PostgresWriteFunctions`, `PostgresAfterSaleFunctions`);
/// payments that arrive together share one (`concertd_pay_many`, `PostgresMoneyBatches`).
extension PostgresConcertStore {
    // MARK: Wallet

    public func balance(userId: Int64) async throws -> Int64 {
        try await first("SELECT balance FROM users WHERE id = \(userId)", as: Int64.self) ?? 0
    }

    public func charge(userId: Int64, amount: Int64, now: Timestamp, rules: BookingRules,
                       idempotency: IdempotentCompletion<Int64>?) async throws -> Int64 {
        // The amount's own limits do not depend on the balance: check them before any I/O.
        try WalletPolicy.checkCharge(amount: amount, balance: 0, rules: rules)
        let answer = try AnswerTemplate(idempotency, placeholder: AnswerTemplate.marker(0), markers: ChargeBatchStatement.markers)
        let logger = self.logger
        let item = ChargeItem(userId: userId, amount: amount, now: now.milliseconds, answer: answer)
        let answered = try await chargeBatcher.submit(item) { [self] items in
            try await autocommit { connection in try await Self.charge(items, on: connection, logger: logger) }
        }
        let (outcome, balance) = (answered.outcome, answered.balance)
        switch outcome {
        case "CHARGED":
            return balance
        case "OVER_MAX_BALANCE":
            // The wallet rule says why (it refuses: the function found the balance too high).
            try WalletPolicy.checkCharge(amount: amount, balance: balance, rules: rules)
            throw PostgresStoreError("concertd_charge refused a charge the wallet rule allows (balance \(balance))")
        default:
            throw PostgresStoreError("concertd_charge answered \(outcome)")
        }
    }

    /// One call of `concertd_charge_many` for a batch; one (outcome, balance) per item, in order.
    private static func charge(_ items: [ChargeItem], on connection: PostgresConnection, logger: Logger) async throws -> [ChargeOutcome] {
        var outcomes = [ChargeOutcome?](repeating: nil, count: items.count)
        let rows = try await connection.rows(ChargeBatchStatement(items: items, maxBalance: BookingRules.maxBalance), logger: logger)
        for row in rows {
            let (item, outcome, balance) = try row.decode((Int64, String, Int64).self)
            guard item >= 1, item <= items.count else { throw PostgresStoreError("concertd_charge_many answered for item \(item) of \(items.count)") }
            outcomes[Int(item) - 1] = ChargeOutcome(outcome: outcome, balance: balance)
        }
        return try outcomes.map { outcome in
            guard let outcome else { throw BatchMismatch(expected: items.count, got: rows.count) }
            return outcome
        }
    }

    public func history(userId: Int64) async throws -> [PointEntry] {
        try await rows("""
            SELECT id, type, amount, balance_after, created_at FROM point_entries WHERE user_id = \(userId) ORDER BY id DESC
            """).map { row in
            let (id, type, amount, balanceAfter, createdAt) = try row.decode((Int64, String, Int64, Int64, Int64).self)
            return PointEntry(id: id, type: PointEntryType(rawValue: type) ?? .charge, amount: amount,
                              balanceAfter: balanceAfter, createdAt: Timestamp(milliseconds: createdAt))
        }
    }

    // MARK: Payments

    public func pay(userId: Int64, reservationId: Int64, now: Timestamp,
                    idempotency: IdempotentCompletion<PaymentReceipt>?) async throws -> PaymentReceipt {
        try await pay(userId: userId, reservationId: reservationId, now: now, ticket: nil, idempotency: idempotency)
    }

    /// A payment, with its queue token checked and claimed in the same call when `ticket` is set
    /// (`PostgresTicketedWrites`).
    func pay(userId: Int64, reservationId: Int64, now: Timestamp, ticket: PaymentTicketCheck?,
             idempotency: IdempotentCompletion<PaymentReceipt>?) async throws -> PaymentReceipt {
        let placeholder = PaymentReceipt(
            payment: Payment(id: AnswerTemplate.marker(0), userId: userId, reservationId: reservationId,
                             amount: AnswerTemplate.marker(1), paidAt: now),
            balance: AnswerTemplate.marker(2), concertId: 0)
        let answer = try AnswerTemplate(idempotency, placeholder: placeholder, markers: PayBatchStatement.markers)
        let logger = self.logger
        let item = PayItem(userId: userId, reservationId: reservationId, now: now.milliseconds, answer: answer, ticket: ticket)
        let answered = try await payBatcher.submit(item) { [self] items in
            try await autocommit { connection in try await Self.pay(items, on: connection, logger: logger) }
        }
        let outcome = answered.outcome
        switch (outcome, answered.paymentId, answered.amount, answered.balance, answered.concertId) {
        case ("PAID", let id?, let amount?, let balance?, let concertId?):
            return PaymentReceipt(payment: Payment(id: id, userId: userId, reservationId: reservationId, amount: amount, paidAt: now),
                                  balance: balance, concertId: concertId)
        case ("INSUFFICIENT_POINTS", _, let price?, let balance?, _):
            try WalletPolicy.checkPayment(price: price, balance: balance)
            throw PostgresStoreError("concertd_pay refused a payment the wallet rule allows (balance \(balance), price \(price))")
        case ("RESERVATION_NOT_FOUND", _, _, _, _): throw DomainError.reservationNotFound
        case ("RESERVATION_ALREADY_PAID", _, _, _, _): throw DomainError.reservationAlreadyPaid
        case ("RESERVATION_EXPIRED", _, _, _, _): throw DomainError.reservationExpired
        case ("RESERVATION_NOT_HELD", _, _, _, _): throw DomainError.reservationNotHeld
        case ("QUEUE_TOKEN_INVALID", _, _, _, _): throw DomainError.queueTokenInvalid
        case ("QUEUE_TOKEN_NOT_ACTIVE", _, _, _, _): throw DomainError.queueTokenNotActive
        default: throw PostgresStoreError("concertd_pay answered \(outcome)")
        }
    }

    /// One call of `concertd_pay_batch` for a batch; one outcome per item, in order.
    private static func pay(_ items: [PayItem], on connection: PostgresConnection, logger: Logger) async throws -> [PayOutcome] {
        var outcomes = [PayOutcome?](repeating: nil, count: items.count)
        let rows = try await connection.rows(PayBatchStatement(items: items), logger: logger)
        for row in rows {
            let (item, outcome, paymentId, amount, balance, concertId) = try row.decode((Int64, String, Int64?, Int64?, Int64?, Int64?).self)
            guard item >= 1, item <= items.count else { throw PostgresStoreError("concertd_pay_batch answered for item \(item) of \(items.count)") }
            outcomes[Int(item) - 1] = PayOutcome(outcome: outcome, paymentId: paymentId, amount: amount, balance: balance,
                                                 concertId: concertId)
        }
        return try outcomes.map { outcome in
            guard let outcome else { throw BatchMismatch(expected: items.count, got: rows.count) }
            return outcome
        }
    }

    public func payment(id: Int64, userId: Int64) async throws -> Payment? {
        try await rows("""
            SELECT id, user_id, reservation_id, amount, paid_at, status, refunded_at FROM payments WHERE id = \(id) AND user_id = \(userId)
            """).first.map { row in
                let (id, userId, reservationId, amount, paidAt, status, refundedAt) =
                    try row.decode((Int64, Int64, Int64, Int64, Int64, String, Int64?).self)
                return Payment(id: id, userId: userId, reservationId: reservationId, amount: amount, paidAt: Timestamp(milliseconds: paidAt),
                               status: PaymentStatus(rawValue: status) ?? .refunded, refundedAt: refundedAt.map(Timestamp.init(milliseconds:)))
            }
    }

    // MARK: Refunds and cancelled dates

    public func refund(userId: Int64, paymentId: Int64, now: Timestamp, rules: BookingRules,
                       idempotency: IdempotentCompletion<RefundReceipt>?) async throws -> RefundReceipt {
        // What only the write knows (the entry id, the reservation, the amount, the balance after)
        // is rendered as markers 0...3; see `AnswerTemplate`.
        let placeholder = RefundReceipt(entryId: AnswerTemplate.marker(0), paymentId: paymentId, reservationId: AnswerTemplate.marker(1),
                                        amount: AnswerTemplate.marker(2), refundedAt: now, balance: AnswerTemplate.marker(3),
                                        scheduleId: 0, concertId: 0)
        let answer = try AnswerTemplate(idempotency, placeholder: placeholder, markers: 4)
        let logger = self.logger
        let row = try await autocommit { connection in
            try await connection.query("""
                SELECT o_outcome, o_entry, o_reservation, o_amount, o_balance, o_schedule, o_concert
                FROM concertd_refund(\(userId), \(paymentId), \(now.milliseconds), \(rules.refundCutoffMilliseconds),
                  \(answer?.key), \(answer?.claimedAt), \(answer?.status), \(answer?.body), \(answer?.marks))
                """, logger: logger).collect().first
        }
        guard let row else { throw PostgresStoreError("concertd_refund answered no row") }
        let (outcome, entry, reservation, amount, balance, schedule, concert) =
            try row.decode((String, Int64?, Int64?, Int64?, Int64?, Int64?, Int64?).self)
        switch (outcome, entry, reservation, amount, balance, schedule, concert) {
        case ("REFUNDED", let entry?, let reservation?, let amount?, let balance?, let schedule?, let concert?):
            return RefundReceipt(entryId: entry, paymentId: paymentId, reservationId: reservation, amount: amount, refundedAt: now,
                                 balance: balance, scheduleId: schedule, concertId: concert)
        case ("PAYMENT_NOT_FOUND", _, _, _, _, _, _): throw DomainError.paymentNotFound
        case ("PAYMENT_ALREADY_REFUNDED", _, _, _, _, _, _): throw DomainError.paymentAlreadyRefunded
        case ("REFUND_NOT_ALLOWED", _, _, _, _, _, _): throw DomainError.refundNotAllowed
        default: throw PostgresStoreError("concertd_refund answered \(outcome)")
        }
    }

    public func cancelSchedule(id: Int64, now: Timestamp) async throws -> ScheduleCancellation {
        let logger = self.logger
        let row = try await autocommit { connection in
            try await connection.query("""
                SELECT o_outcome, o_concert, o_refunded, o_released FROM concertd_cancel_schedule(\(id), \(now.milliseconds))
                """, logger: logger).collect().first
        }
        guard let row else { throw PostgresStoreError("concertd_cancel_schedule answered no row") }
        let (outcome, concert, refunded, released) = try row.decode((String, Int64?, Int64, Int64).self)
        scheduleFacts.withLock { _ = $0.removeValue(forKey: id) }
        switch (outcome, concert) {
        case ("CANCELLED", let concert?), ("ALREADY_CANCELLED", let concert?):
            return ScheduleCancellation(scheduleId: id, concertId: concert, refunded: Int(refunded), released: Int(released))
        case ("SCHEDULE_NOT_FOUND", _): throw DomainError.scheduleNotFound
        default: throw PostgresStoreError("concertd_cancel_schedule answered \(outcome)")
        }
    }

    // MARK: Idempotency

    public func claim(userId: Int64, key: String, fingerprint: String, now: Timestamp,
                      leaseMilliseconds: Int64, retentionMilliseconds: Int64) async throws -> IdempotencyClaim {
        let logger = self.logger
        let t = now.milliseconds
        // A key seen for the first time (the usual case) is claimed in one statement; the
        // primary key arbitrates between concurrent first claims.
        let claimed = try await first("""
            INSERT INTO idempotency_keys (user_id, key, fingerprint, state, created_at)
            VALUES (\(userId), \(key), \(fingerprint), 'RUNNING', \(t))
            ON CONFLICT (user_id, key) DO NOTHING
            RETURNING 1
            """, as: Int.self)
        if claimed != nil { return .proceed }
        return try await transaction { connection in
            // A release can delete the row between the insert and the select; then try again.
            for _ in 0..<3 {
                // The primary key arbitrates between concurrent first claims of a key.
                let inserted = try await Self.first(on: connection, logger: logger, """
                    INSERT INTO idempotency_keys (user_id, key, fingerprint, state, created_at)
                    VALUES (\(userId), \(key), \(fingerprint), 'RUNNING', \(t))
                    ON CONFLICT (user_id, key) DO NOTHING
                    RETURNING 1
                    """, as: Int.self)
                if inserted != nil { return .proceed }
                guard let row = try await connection.query("""
                    SELECT fingerprint, state, response_status, response_body, created_at
                    FROM idempotency_keys WHERE user_id = \(userId) AND key = \(key) FOR UPDATE
                    """, logger: logger).collect().first else { continue }
                let (storedFingerprint, state, status, body, createdAt) = try row.decode((String, String, Int?, ByteBuffer?, Int64).self)
                if createdAt + retentionMilliseconds > t {
                    let stored = StoredIdempotency(fingerprint: storedFingerprint, done: state == "DONE", status: status,
                                                   body: body.map { Array($0.readableBytesView) }, createdAt: createdAt)
                    if let decided = stored.decide(fingerprint: fingerprint, now: t, leaseMilliseconds: leaseMilliseconds) {
                        return decided
                    }
                }
                // Past its retention, or an abandoned claim past its lease: take it over.
                try await connection.query("""
                    UPDATE idempotency_keys SET fingerprint = \(fingerprint), state = 'RUNNING', response_status = NULL,
                      response_body = NULL, created_at = \(t)
                    WHERE user_id = \(userId) AND key = \(key)
                    """, logger: logger)
                return .proceed
            }
            throw PostgresStoreError("idempotency key \(key) kept vanishing while being claimed")
        }
    }

    public func purgeIdempotencyKeys(claimedBefore cutoff: Timestamp) async throws -> Int {
        let deleted = try await rows("DELETE FROM idempotency_keys WHERE created_at < \(cutoff.milliseconds) RETURNING 1")
        return deleted.count
    }

    public func release(userId: Int64, key: String, claimedAt: Timestamp) async throws {
        let logger = self.logger
        try await withConnection { connection in
            _ = try await connection.query("""
                DELETE FROM idempotency_keys WHERE user_id = \(userId) AND key = \(key) AND state = 'RUNNING'
                  AND created_at = \(claimedAt.milliseconds)
                """, logger: logger).collect()
        }
    }
}
