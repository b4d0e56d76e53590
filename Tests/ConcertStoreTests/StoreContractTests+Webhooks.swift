import ConcertDomain
import ConcertPostgres
import ConcertSQLite
import ConcertStore
import ConcertTestSupport
import Foundation
import GRDB
import Testing

/// A store plus raw SQL on its database, for changes other code (the refund functions, an
/// operator's UPDATE) makes: `execute(sql, commit)` runs the statements in one transaction and
/// commits it or rolls it back.
private func withRawStore(_ engine: Engine,
                          _ body: (any ConcertStore, _ execute: @Sendable ([String], _ commit: Bool) async throws -> Void) async throws -> Void)
    async throws {
    switch engine {
    case .sqlite:
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("concert-test-\(UUID().uuidString).sqlite").path
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        let store = try SQLiteConcertStore(path: path)
        try await store.migrate()
        var config = Configuration()
        config.busyMode = .timeout(10)
        let raw = try DatabaseQueue(path: path, configuration: config)
        try await body(store) { statements, commit in
            try await raw.writeWithoutTransaction { db in
                try db.inTransaction {
                    for sql in statements { try db.execute(sql: sql) }
                    return commit ? .commit : .rollback
                }
            }
        }
    case .postgres:
        guard let adminURL = TestServices.postgresURL else { throw MissingService(description: "CONCERT_TEST_POSTGRES_URL is not set") }
        let database = try await TestDatabase.create(adminURL: adminURL)
        let store = try PostgresConcertStore(url: database.url, logger: TestServices.logger)
        let run = Task { await store.run() }
        var outcome: Result<Void, any Error> = .success(())
        do {
            try await store.migrate()
            try await body(store) { statements, commit in
                let held = try await HeldTransaction.begin(on: database, statements + (commit ? ["COMMIT"] : []))
                await held.release()
            }
        } catch {
            outcome = .failure(error)
        }
        run.cancel()
        await run.value
        try? await database.drop()
        try outcome.get()
    }
}

/// Every outbox event due at `time` for the webhooks, in the order a relay would be given them,
/// each recorded as delivered (so the next in its reservation's line becomes due).
private func drain(_ store: any ConcertStore, at time: Timestamp = now) async throws -> [WebhookDelivery] {
    _ = try await store.dispatchWebhookEvents(now: time, limit: 1000)
    var all: [WebhookDelivery] = []
    while true {
        let batch = try await store.claimWebhookDeliveries(now: time, leaseMilliseconds: 30_000, limit: 1000)
        if batch.isEmpty { return all }
        for delivery in batch { try await store.recordWebhookAttempt(delivery, outcome: .delivered(status: 200), now: time) }
        all += batch
    }
}

private func snapshot(_ delivery: WebhookDelivery) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(delivery.data.utf8))) as? [String: Any] ?? [:]
}

extension StoreContractTests {
    // MARK: Webhooks and the outbox

    @Test("webhooks: registered, listed by id, deleted once", arguments: Engine.available)
    func webhookRegistrations(engine: Engine) async throws {
        try await withStore(engine) { store in
            let a = try await store.createWebhook(url: "https://a.example/hook", events: ["reservation.held"], secret: "whsec_a", now: now)
            let b = try await store.createWebhook(url: "https://b.example/hook", events: ["payment.paid", "payment.refunded"],
                                                  secret: "whsec_b", now: at(1))
            #expect(try await store.webhooks() == [a, b])
            #expect(try await store.deleteWebhook(id: a.id))
            #expect(try await store.deleteWebhook(id: a.id) == false)
            #expect(try await store.webhooks() == [b])
        }
    }

    @Test("outbox: nothing is written while no webhook is registered", arguments: Engine.available)
    func outboxIsQuietWithoutWebhooks(engine: Engine) async throws {
        try await withStore(engine) { store in
            let (_, schedule) = try await makeOpenSchedule(store)
            _ = try await store.hold(holdRequest(user: 1, schedule: schedule, seat: 1))
            _ = try await store.createWebhook(url: "https://a.example/", events: ["reservation.held"], secret: "whsec_a", now: now)
            #expect(try await store.webhookBacklog().undispatchedEvents == 0, "the hold before the registration wrote nothing")
            _ = try await store.hold(holdRequest(user: 1, schedule: schedule, seat: 2))
            #expect(try await store.webhookBacklog().undispatchedEvents == 1)
        }
    }

    @Test("outbox: every change writes its event in the same transaction, with the row as it stood after it",
          arguments: Engine.available)
    func outboxEventsOfEveryChange(engine: Engine) async throws {
        try await withRawStore(engine) { store, execute in
            let (concert, schedule) = try await makeOpenSchedule(store, price: 700)
            let all = WebhookEventType.allCases.map(\.rawValue)
            let hook = try await store.createWebhook(url: "https://a.example/", events: all, secret: "whsec_a", now: now)
            _ = try await store.charge(userId: 1, amount: 10_000, now: now, rules: rules, idempotency: nil)
            let cancelled = try await store.hold(holdRequest(user: 1, schedule: schedule, seat: 1))
            try await store.cancel(reservationId: cancelled.id, userId: 1, now: at(1000))
            let paid = try await store.hold(holdRequest(user: 1, schedule: schedule, seat: 2))
            let receipt = try await store.pay(userId: 1, reservationId: paid.id, now: at(2000), idempotency: nil)
            let runOut = try await store.hold(holdRequest(user: 1, schedule: schedule, seat: 3))
            #expect(try await store.expireRunOutHolds(now: runOut.heldUntil.adding(milliseconds: -1), limit: 10) == 0)
            #expect(try await store.expireRunOutHolds(now: runOut.heldUntil, limit: 10) == 1)
            #expect(try await store.expireRunOutHolds(now: runOut.heldUntil, limit: 10) == 0, "written down once")
            // What the refund and schedule-cancel code does: plain UPDATEs.
            try await execute([
                "UPDATE payments SET status = 'REFUNDED', refunded_at = \(at(5000).milliseconds) WHERE id = \(receipt.payment.id)",
                "UPDATE reservations SET status = 'CANCELLED' WHERE id = \(paid.id)",
                "UPDATE schedules SET cancelled_at = \(at(6000).milliseconds) WHERE id = \(schedule.id)",
            ], true)
            try await execute(["UPDATE schedules SET cancelled_at = \(at(7000).milliseconds) WHERE id = \(schedule.id)"], true)

            // In the order the events happened (the drain hands out one per reservation at a time).
            let deliveries = try await drain(store).sorted { $0.eventId < $1.eventId }
            #expect(deliveries.map(\.type) == [
                "reservation.held", "reservation.cancelled", "reservation.held", "payment.paid", "reservation.held",
                "reservation.expired", "payment.refunded", "reservation.cancelled", "schedule.cancelled",
            ])
            #expect(Set(deliveries.map(\.eventId)).count == deliveries.count, "one event id per event")
            #expect(deliveries.allSatisfy { $0.webhookId == hook.id && $0.url == hook.url && $0.secret == hook.secret })
            let held = snapshot(deliveries[0])
            #expect(held["id"] as? Int == Int(cancelled.id) && held["status"] as? String == "HELD")
            #expect(held["scheduleId"] as? Int == Int(schedule.id) && held["concertId"] as? Int == Int(concert.id))
            #expect(held["seatNumber"] as? Int == 1 && held["price"] as? Int == 700)
            #expect((held["heldUntil"] as? NSNumber)?.int64Value == cancelled.heldUntil.milliseconds)
            #expect((held["createdAt"] as? NSNumber)?.int64Value == cancelled.createdAt.milliseconds)
            #expect(held["paymentId"] is NSNull, "a hold has no payment, and says so")
            #expect(snapshot(deliveries[1])["status"] as? String == "CANCELLED" && snapshot(deliveries[1])["paymentId"] is NSNull)
            let refundedReservation = snapshot(deliveries[7])
            #expect(refundedReservation["status"] as? String == "CANCELLED" && refundedReservation["id"] as? Int == Int(paid.id))
            #expect(refundedReservation["paymentId"] as? Int == Int(receipt.payment.id), "the refunded seat names its payment")
            let payment = snapshot(deliveries[3])
            #expect(payment["id"] as? Int == Int(receipt.payment.id) && payment["reservationId"] as? Int == Int(paid.id))
            #expect(payment["amount"] as? Int == 700 && payment["status"] as? String == "PAID" && payment["refundedAt"] is NSNull)
            #expect(snapshot(deliveries[5])["status"] as? String == "EXPIRED")
            let refunded = snapshot(deliveries[6])
            #expect(refunded["status"] as? String == "REFUNDED" && (refunded["refundedAt"] as? NSNumber)?.int64Value == at(5000).milliseconds)
            let scheduleEvent = snapshot(deliveries[8])
            #expect(scheduleEvent["scheduleId"] as? Int == Int(schedule.id) && scheduleEvent["concertId"] as? Int == Int(concert.id))
            #expect(try await store.webhookBacklog() == WebhookBacklog(undispatchedEvents: 0, pendingDeliveries: 0, oldest: nil))
        }
    }

    @Test("outbox: a change that rolls back leaves no event", arguments: Engine.available)
    func rolledBackChangesLeaveNoEvent(engine: Engine) async throws {
        try await withRawStore(engine) { store, execute in
            let (_, schedule) = try await makeOpenSchedule(store)
            _ = try await store.createWebhook(url: "https://a.example/", events: WebhookEventType.allCases.map(\.rawValue),
                                              secret: "whsec_a", now: now)
            let held = try await store.hold(holdRequest(user: 1, schedule: schedule, seat: 1))
            #expect(try await store.webhookBacklog().undispatchedEvents == 1)
            try await execute([
                "UPDATE reservations SET status = 'CANCELLED' WHERE id = \(held.id)",
                "UPDATE schedules SET cancelled_at = \(at(1000).milliseconds) WHERE id = \(schedule.id)",
            ], false)
            // A payment that fails (no points) rolls back inside the store.
            await #expect(throws: DomainError.self) { try await store.pay(userId: 1, reservationId: held.id, now: at(10), idempotency: nil) }
            #expect(try await store.webhookBacklog().undispatchedEvents == 1)
            #expect(try await drain(store).map(\.type) == ["reservation.held"])
        }
    }

    @Test("deliveries: one per subscribed webhook; per reservation in order; retries wait; a lost lease is re-claimed",
          arguments: Engine.available)
    func deliveryClaims(engine: Engine) async throws {
        try await withStore(engine) { store in
            let (_, schedule) = try await makeOpenSchedule(store)
            let holds = try await store.createWebhook(url: "https://a.example/", events: ["reservation.held", "reservation.cancelled"],
                                                      secret: "whsec_a", now: now)
            let payments = try await store.createWebhook(url: "https://b.example/", events: ["payment.paid"], secret: "whsec_b", now: now)
            let r1 = try await store.hold(holdRequest(user: 1, schedule: schedule, seat: 1))
            try await store.cancel(reservationId: r1.id, userId: 1, now: now)
            let r2 = try await store.hold(holdRequest(user: 2, schedule: schedule, seat: 2))
            #expect(try await store.dispatchWebhookEvents(now: now, limit: 100) == 3)
            #expect(try await store.dispatchWebhookEvents(now: now, limit: 100) == 0)
            // r1's cancellation waits behind its hold; r2's hold is due too.
            let first = try await store.claimWebhookDeliveries(now: now, leaseMilliseconds: 10_000, limit: 10)
            #expect(first.map(\.type) == ["reservation.held", "reservation.held"])
            #expect(first.allSatisfy { $0.webhookId == holds.id })
            #expect(try await store.claimWebhookDeliveries(now: at(9_999), leaseMilliseconds: 10_000, limit: 10).isEmpty,
                    "leased ones are not claimed twice, and the cancellation waits for its hold")
            // r1's hold fails: retried later; its cancellation still waits.
            let r1Hold = try #require(first.first { snapshot($0)["id"] as? Int == Int(r1.id) })
            try await store.recordWebhookAttempt(r1Hold, outcome: .retry(at: at(60_000), status: 500, error: "HTTP 500"), now: at(100))
            #expect(try await store.claimWebhookDeliveries(now: at(30_000), leaseMilliseconds: 10_000, limit: 10)
                .filter { snapshot($0)["id"] as? Int == Int(r1.id) }.isEmpty)
            // r2's relay died: its lease runs out and another claim takes it (attempts unchanged).
            let retaken = try await store.claimWebhookDeliveries(now: at(60_000), leaseMilliseconds: 10_000, limit: 10)
            #expect(Set(retaken.map(\.id)) == Set(first.map(\.id)))
            // The dead relay's late report is ignored (its lease is gone).
            let r2Hold = try #require(first.first { snapshot($0)["id"] as? Int == Int(r2.id) })
            try await store.recordWebhookAttempt(r2Hold, outcome: .failed(status: nil, error: "late"), now: at(60_001))
            for delivery in retaken { try await store.recordWebhookAttempt(delivery, outcome: .delivered(status: 204), now: at(60_002)) }
            let next = try await store.claimWebhookDeliveries(now: at(60_003), leaseMilliseconds: 10_000, limit: 10)
            #expect(next.map(\.type) == ["reservation.cancelled"])
            let recent = try await store.recentWebhookDeliveries(limit: 10)
            #expect(recent.filter { $0.state == "DELIVERED" }.count == 2 && recent.allSatisfy { $0.state != "FAILED" })
            #expect(recent.first { $0.eventId == r1Hold.eventId }?.attempts == 2)
            _ = payments
            // Deleting a webhook drops its deliveries.
            #expect(try await store.deleteWebhook(id: holds.id))
            #expect(try await store.webhookBacklog().pendingDeliveries == 0)
        }
    }

    @Test("retention: old finished events go with their deliveries, in batches; undelivered and recent ones stay",
          arguments: Engine.available)
    func retentionPrunesOnlyFinishedOldEvents(engine: Engine) async throws {
        let hour: Int64 = 3_600_000
        try await withStore(engine) { store in
            let (_, schedule) = try await makeOpenSchedule(store)
            let hook = try await store.createWebhook(url: "https://a.example/", events: ["reservation.held"], secret: "whsec_a", now: now)
            // Fanned out at `now`: seats 1-3 delivered at once, seat 4 failed for good, seat 5
            // still being retried, seat 6 delivered only later, seat 7 delivered to one webhook
            // and still pending for another.
            let other = try await store.createWebhook(url: "https://b.example/", events: ["reservation.held"], secret: "whsec_b", now: now)
            var reservationBySeat: [Int: Int64] = [:]
            for seat in 1...7 { reservationBySeat[seat] = try await store.hold(holdRequest(user: Int64(seat), schedule: schedule, seat: seat)).id }
            #expect(try await store.dispatchWebhookEvents(now: now, limit: 100) == 7)
            let claimed = try await store.claimWebhookDeliveries(now: now, leaseMilliseconds: 30_000, limit: 100)
            #expect(claimed.count == 14)
            func seat(of delivery: WebhookDelivery) -> Int {
                reservationBySeat.first { $0.value == Int64(snapshot(delivery)["id"] as? Int ?? 0) }?.key ?? 0
            }
            for delivery in claimed {
                let outcome: WebhookAttemptOutcome
                switch seat(of: delivery) {
                case 4: outcome = .failed(status: 500, error: "given up")
                case 5: outcome = .retry(at: at(day), status: 500, error: "HTTP 500")
                case 6: outcome = .retry(at: at(2 * hour), status: 500, error: "HTTP 500")
                case 7 where delivery.webhookId == other.id: outcome = .retry(at: at(day), status: 503, error: "HTTP 503")
                default: outcome = .delivered(status: 204)
                }
                try await store.recordWebhookAttempt(delivery, outcome: outcome, now: at(minute))
            }
            let late = try await store.claimWebhookDeliveries(now: at(2 * hour), leaseMilliseconds: 30_000, limit: 100)
            #expect(late.map(seat(of:)) == [6, 6])
            for delivery in late { try await store.recordWebhookAttempt(delivery, outcome: .delivered(status: 200), now: at(2 * hour)) }
            // A hold after the fan-out: its event waits undispatched.
            reservationBySeat[8] = try await store.hold(holdRequest(user: 8, schedule: schedule, seat: 8)).id

            // Nothing finished before `now` (every delivery ended at now + 1 minute or later).
            #expect(try await store.pruneWebhookEvents(before: now, limit: 100) == 0)
            // Keep an hour: seats 1-4 ended at now + 1 minute, so they go, two per batch.
            #expect(try await store.pruneWebhookEvents(before: at(hour), limit: 2) == 2)
            #expect(try await store.pruneWebhookEvents(before: at(hour), limit: 2) == 2)
            #expect(try await store.pruneWebhookEvents(before: at(hour), limit: 2) == 0)
            var left = try await store.recentWebhookDeliveries(limit: 100)
            #expect(Set(left.map(\.eventId)).count == 3, "seats 5, 6 and 7 keep their events")
            #expect(left.count == 6 && left.allSatisfy { [hook.id, other.id].contains($0.webhookId) })
            #expect(try await store.webhookBacklog().undispatchedEvents == 1, "the undispatched event stays")
            // Much later: seat 6 (delivered at now + 2 h) goes too; seats 5 and 7 are still pending,
            // and the undispatched one is never touched.
            #expect(try await store.pruneWebhookEvents(before: at(30 * day), limit: 100) == 1)
            left = try await store.recentWebhookDeliveries(limit: 100)
            #expect(left.count == 4 && left.filter { $0.state == "PENDING" }.count == 3)
            let backlog = try await store.webhookBacklog()
            #expect(backlog.undispatchedEvents == 1 && backlog.pendingDeliveries == 3)
            // What stays still works: the undispatched event fans out and is delivered.
            let rest = try await drain(store, at: at(30 * day))
            #expect(rest.map(seat(of:)).sorted() == [5, 5, 7, 8, 8])
        }
    }
}
