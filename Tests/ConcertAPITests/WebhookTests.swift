import ConcertAPI
import ConcertDomain
import ConcertStore
import Foundation
import Logging
import Synchronization
import Testing
import Webhooks

/// A resolver whose answers a test changes while it runs (a name that rebinds); never asks anyone.
final class ScriptedResolver: WebhookResolver {
    private let table: Mutex<[String: [IPAddress]]>
    init(_ table: [String: [IPAddress]]) { self.table = Mutex(table) }
    func set(_ host: String, _ addresses: [IPAddress]) { table.withLock { $0[host] = addresses } }
    func resolve(host: String) async throws -> [IPAddress] { table.withLock { $0[host.lowercased()] ?? [] } }
    func permits(_ address: IPAddress) -> Bool { address.isLoopback }
}

func ip(_ text: String) -> IPAddress { IPAddress(literal: text)! }

extension API {
    /// Registers a webhook for `events` (all by default) and returns (id, secret).
    func registerWebhook(_ url: String, events: [String] = WebhookEventType.allCases.map(\.rawValue)) async throws -> (Int64, String) {
        let list = events.map { "\"\($0)\"" }.joined(separator: ",")
        let reply = try await call(.post, "/v1/admin/webhooks", user: 1, admin: true, json: #"{"url": "\#(url)", "events": [\#(list)]}"#)
        #expect(reply.status == 201, "\(reply.json)")
        return (reply.int("id") ?? 0, reply.string("secret") ?? "")
    }
}

@Suite("Webhooks")
struct WebhookTests {
    static func allowingLoopback(_ config: inout AppConfig) {
        config.webhookAllowPrivate = true
        config.webhookPollMilliseconds = 20
    }

    @Test(arguments: TestBackend.all) func registrationListingAndDeletionFollowTheContract(backend: TestBackend) async throws {
        try await withAPI(backend, configure: {
            $0.webhookResolverOverride = StaticWebhookResolver(["hooks.example": [ip("93.184.216.34")]])
        }) { api in
            let created = try await api.call(.post, "/v1/admin/webhooks", user: 1, admin: true,
                                             json: #"{"url": "https://hooks.example/in", "events": ["reservation.held", "payment.paid"]}"#)
            #expect(created.status == 201)
            let secret = try #require(created.string("secret"))
            #expect(secret.hasPrefix("whsec_") && Data(base64Encoded: String(secret.dropFirst(6)))?.count == 32)
            #expect(created.string("url") == "https://hooks.example/in")
            #expect(created.json["events"] as? [String] == ["reservation.held", "payment.paid"])
            #expect(created.string("createdAt") != nil && created.int("id") != nil)
            let id = created.int("id")!

            let list = try await api.call(.get, "/v1/admin/webhooks", user: 1, admin: true)
            #expect(list.status == 200)
            let hooks = list.array("webhooks")
            #expect(hooks.count == 1 && hooks[0]["secret"] == nil && (hooks[0]["id"] as? Int) == Int(id))
            #expect(Set(hooks[0].keys) == ["id", "url", "events", "createdAt"])

            // Not for fans; bad input changes nothing.
            #expect(try await api.call(.get, "/v1/admin/webhooks", user: 5).code == "FORBIDDEN")
            #expect(try await api.call(.post, "/v1/admin/webhooks", user: 5,
                                       json: #"{"url": "https://hooks.example/", "events": ["payment.paid"]}"#).code == "FORBIDDEN")
            let refusals: [(String, String)] = [
                (#"{"url": "https://hooks.example/", "events": ["payment.lost"]}"#, "VALIDATION_FAILED"),
                (#"{"url": "https://hooks.example/", "events": []}"#, "VALIDATION_FAILED"),
                (#"{"url": "ftp://hooks.example/", "events": ["payment.paid"]}"#, "VALIDATION_FAILED"),
                (#"{"url": "hooks.example", "events": ["payment.paid"]}"#, "VALIDATION_FAILED"),
                (#"{"url": "https:///nohost", "events": ["payment.paid"]}"#, "VALIDATION_FAILED"),
                (#"{"url": "https://1.2.3.4.5/", "events": ["payment.paid"]}"#, "VALIDATION_FAILED"),
                (#"{"url": 5, "events": ["payment.paid"]}"#, "MALFORMED_REQUEST"),
                (#"{"url": "https://hooks.example/"}"#, "MALFORMED_REQUEST"),
                (#"{"url": "https://hooks.example/", "events": "payment.paid"}"#, "MALFORMED_REQUEST"),
                ("{", "MALFORMED_REQUEST"),
            ]
            for (body, code) in refusals {
                let reply = try await api.call(.post, "/v1/admin/webhooks", user: 1, admin: true, json: body)
                #expect(reply.code == code && reply.status == (code == "MALFORMED_REQUEST" ? 400 : 422), "\(body): \(reply.json)")
            }
            #expect(try await api.call(.get, "/v1/admin/webhooks", user: 1, admin: true).array("webhooks").count == 1)

            #expect(try await api.call(.delete, "/v1/admin/webhooks/\(id)", user: 1, admin: true).status == 204)
            let again = try await api.call(.delete, "/v1/admin/webhooks/\(id)", user: 1, admin: true)
            #expect(again.status == 404 && again.code == "WEBHOOK_NOT_FOUND")
            #expect(try await api.call(.delete, "/v1/admin/webhooks/abc", user: 1, admin: true).code == "WEBHOOK_NOT_FOUND")
            #expect(try await api.call(.get, "/v1/admin/webhooks", user: 1, admin: true).array("webhooks").isEmpty)
        }
    }

    @Test func privateLoopbackAndLinkLocalURLsAreRefused() async throws {
        let resolver = StaticWebhookResolver([
            "internal.example": [ip("10.1.2.3")],
            "mixed.example": [ip("93.184.216.34"), ip("192.168.0.7")],
            "metadata.example": [ip("169.254.169.254")],
            "v6.example": [ip("fd12::1")],
            "public.example": [ip("93.184.216.34")],
        ], permitted: { _ in false })
        try await withAPI(configure: { $0.webhookResolverOverride = resolver }) { api in
            let refused = [
                "http://127.0.0.1/", "http://127.8.9.10:8080/x", "http://2130706433/", "http://0177.0.0.1/", "http://0x7f.0.0.1/",
                "http://0x7f000001/", "http://127.1/", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/",
                "http://10.0.0.1/", "http://172.16.5.4/", "http://172.31.255.255/", "http://192.168.1.1/", "http://169.254.169.254/",
                "http://[fe80::1]/", "http://[fc00::1]/", "http://[fd00::5]/", "http://0.0.0.0/", "http://0/", "http://[::]/",
                "http://[::ffff:10.0.0.1]/", "http://[::ffff:169.254.169.254]/",
                "https://internal.example/", "https://mixed.example/", "https://metadata.example/", "https://v6.example/",
            ]
            for url in refused {
                let reply = try await api.call(.post, "/v1/admin/webhooks", user: 1, admin: true,
                                               json: #"{"url": "\#(url)", "events": ["payment.paid"]}"#)
                #expect(reply.status == 422 && reply.code == "VALIDATION_FAILED", "\(url) was not refused: \(reply.json)")
            }
            #expect(try await api.call(.get, "/v1/admin/webhooks", user: 1, admin: true).array("webhooks").isEmpty)
            // Public addresses, and names that resolve to nothing now (checked again at delivery).
            for url in ["https://public.example/hook", "http://93.184.216.34/", "https://nowhere.example/", "http://172.32.0.1/",
                        "http://[2606:4700::1111]/"] {
                let reply = try await api.call(.post, "/v1/admin/webhooks", user: 1, admin: true,
                                               json: #"{"url": "\#(url)", "events": ["payment.paid"]}"#)
                #expect(reply.status == 201, "\(url): \(reply.json)")
            }
        }
        // CONCERT_WEBHOOK_ALLOW_PRIVATE=1 lets them in.
        try await withAPI(configure: { $0.webhookResolverOverride = resolver; $0.webhookAllowPrivate = true }) { api in
            for url in ["http://127.0.0.1:9/", "https://internal.example/"] {
                let reply = try await api.call(.post, "/v1/admin/webhooks", user: 1, admin: true,
                                               json: #"{"url": "\#(url)", "events": ["payment.paid"]}"#)
                #expect(reply.status == 201, "\(url): \(reply.json)")
            }
        }
    }

    @Test func aNameThatLaterResolvesToAPrivateAddressIsNeverCalled() async throws {
        let receiver = try await WebhookReceiver()
        defer { Task { await receiver.close() } }
        let resolver = ScriptedResolver(["rebind.example": [ip("93.184.216.34")]])
        try await withAPI(configure: {
            $0.webhookResolverOverride = resolver
            $0.webhookPollMilliseconds = 20
        }) { api in
            _ = try await api.registerWebhook("http://rebind.example:\(receiver.port)/hooks", events: ["reservation.held"])
            resolver.set("rebind.example", [ip("127.0.0.1")])
            let concert = try await api.openConcert()
            let token = try await api.activeToken(concert.concertId, user: 5)
            #expect(try await api.hold(concert.scheduleId, seat: 1, user: 5, token: token).status == 201)
            var deliveries: [[String: Any]] = []
            for _ in 0..<100 {
                deliveries = try await api.call(.get, "/v1/admin/webhooks/deliveries", user: 1, admin: true).array("deliveries")
                if let first = deliveries.first, (first["attempts"] as? Int ?? 0) >= 1 { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect((deliveries.first?["lastError"] as? String)?.contains("127.0.0.1") == true, "\(deliveries)")
            #expect(deliveries.first?["state"] as? String == "PENDING")
            #expect(receiver.received.isEmpty, "the private address was called")
        }
    }

    @Test(arguments: TestBackend.all) func everyChangeSendsItsSignedEventInOrder(backend: TestBackend) async throws {
        let receiver = try await WebhookReceiver()
        defer { Task { await receiver.close() } }
        try await withAPI(backend, configure: { Self.allowingLoopback(&$0); $0.rules.holdMilliseconds = 60_000 }) { api in
            let (_, secret) = try await api.registerWebhook(receiver.url)
            let concert = try await api.openConcert(price: 300)
            let token = try await api.activeToken(concert.concertId, user: 5)
            _ = try await api.charge(1000, user: 5)
            let cancelled = try await api.hold(concert.scheduleId, seat: 1, user: 5, token: token).int("id")!
            #expect(try await api.call(.delete, "/v1/reservations/\(cancelled)", user: 5).status == 204)
            let paid = try await api.hold(concert.scheduleId, seat: 2, user: 5, token: token).int("id")!
            let payment = try await api.pay(paid, user: 5, token: token)
            #expect(payment.status == 201)
            // A payment ends the queue token; user 6 holds the seat that will run out.
            let token6 = try await api.activeToken(concert.concertId, user: 6)
            let third = try await api.hold(concert.scheduleId, seat: 3, user: 6, token: token6)
            let expired = try #require(third.int("id"), "\(third.status) \(third.json)")
            api.clock.advance(seconds: 61)

            let got = try await receiver.waitForAcknowledged(6)
            #expect(got.count == 6)
            #expect(got.allSatisfy { $0.isSigned(with: secret) }, "every signature checks out")
            #expect(Set(got.map(\.id)).count == got.count && got.allSatisfy { $0.id.hasPrefix("msg_") })
            func events(of reservation: Int64) -> [String] {
                got.filter { ($0.data["id"] as? Int) == Int(reservation) && $0.type.hasPrefix("reservation.")
                    || ($0.data["reservationId"] as? Int) == Int(reservation) }.map(\.type)
            }
            #expect(events(of: cancelled) == ["reservation.held", "reservation.cancelled"])
            #expect(events(of: paid) == ["reservation.held", "payment.paid"])
            #expect(events(of: expired) == ["reservation.held", "reservation.expired"])
            for event in got {
                #expect(Set(event.json.keys) == ["type", "timestamp", "data"])
                #expect(RFC3339.parse(event.json["timestamp"] as? String ?? "") != nil)
                #expect(Int64(event.timestamp) != nil)
            }
            // data is the resource in the API's wire shape, as it stood right after the change.
            let expiredNow = try await api.call(.get, "/v1/reservations/\(expired)", user: 6).json
            let expiredEvent = try #require(got.first { $0.type == "reservation.expired" }).data
            #expect(NSDictionary(dictionary: expiredEvent).isEqual(to: expiredNow), "\(expiredEvent) vs \(expiredNow)")
            let paidEvent = try #require(got.first { $0.type == "payment.paid" }).data
            let paymentNow = try await api.call(.get, "/v1/payments/\(payment.int("id")!)", user: 5).json
            for key in ["id", "reservationId", "amount", "status", "paidAt"] {
                #expect(NSDictionary(dictionary: paidEvent)[key] as? NSObject == paymentNow[key] as? NSObject, "\(key)")
            }
            #expect(paidEvent["refundedAt"] is NSNull && paidEvent["status"] as? String == "PAID")
            #expect(receiver.received.count == 6, "nothing was sent twice")
        }
    }

    @Test(arguments: TestBackend.all) func aReceiverThatFailsForAWhileGetsEverythingInOrder(backend: TestBackend) async throws {
        let receiver = try await WebhookReceiver(status: 503)
        defer { Task { await receiver.close() } }
        try await withAPI(backend, configure: { Self.allowingLoopback(&$0) }) { api in
            let (_, secret) = try await api.registerWebhook(receiver.url, events: ["reservation.held", "reservation.cancelled"])
            let concert = try await api.openConcert()
            let token = try await api.activeToken(concert.concertId, user: 5)
            var ids: [Int64] = []
            for seat in 1...3 {
                let id = try await api.hold(concert.scheduleId, seat: seat, user: 5, token: token).int("id")!
                #expect(try await api.call(.delete, "/v1/reservations/\(id)", user: 5).status == 204)
                ids.append(id)
            }
            // Only the first event of each reservation is tried while the receiver fails.
            for _ in 0..<200 where receiver.received.count < 6 {
                api.clock.advance(seconds: 30)
                try await Task.sleep(for: .milliseconds(20))
            }
            let failing = receiver.received
            #expect(failing.count >= 6 && failing.allSatisfy { $0.type == "reservation.held" }, "\(failing.map(\.type))")
            receiver.setStatus(200)
            let got = try await receiver.waitForAcknowledged(6, clock: { api.clock.advance(seconds: 5) })
            #expect(got.count == 6)
            #expect(got.allSatisfy { $0.isSigned(with: secret) })
            for id in ids {
                #expect(got.filter { ($0.data["id"] as? Int) == Int(id) }.map(\.type) == ["reservation.held", "reservation.cancelled"])
            }
        }
    }

    @Test(arguments: TestBackend.all) func aRefundedSeatsEventNamesItsPaymentAsTheAPIDoes(backend: TestBackend) async throws {
        let receiver = try await WebhookReceiver()
        defer { Task { await receiver.close() } }
        try await withAPI(backend, configure: { Self.allowingLoopback(&$0) }) { api in
            _ = try await api.registerWebhook(receiver.url, events: ["reservation.cancelled"])
            let concert = try await api.openConcert(price: 300)
            let token = try await api.activeToken(concert.concertId, user: 5)
            _ = try await api.charge(1000, user: 5)
            let reservation = try await api.hold(concert.scheduleId, seat: 1, user: 5, token: token).int("id")!
            let payment = try await api.pay(reservation, user: 5, token: token).int("id")!
            #expect(try await api.call(.post, "/v1/payments/\(payment)/refund", user: 5).status == 201)
            let got = try await receiver.waitForAcknowledged(1)
            let event = try #require(got.first)
            #expect(event.type == "reservation.cancelled" && (event.data["paymentId"] as? Int) == Int(payment))
            let now = try await api.call(.get, "/v1/reservations/\(reservation)", user: 5).json
            #expect(NSDictionary(dictionary: event.data).isEqual(to: now), "\(event.data) vs \(now)")
        }
    }

    @Test(arguments: TestBackend.all) func finishedEventsGoAfterTheRetentionAndUndeliveredOnesStay(backend: TestBackend) async throws {
        let receiver = try await WebhookReceiver()
        let down = try await WebhookReceiver(status: 503)
        defer { Task { await receiver.close(); await down.close() } }
        try await withAPI(backend, configure: {
            Self.allowingLoopback(&$0)
            $0.rules.holdMilliseconds = 3 * 3_600_000
            $0.webhookRetentionMilliseconds = 10 * 60_000
            $0.webhookRetentionSweepMilliseconds = 20
        }) { api in
            _ = try await api.registerWebhook(receiver.url, events: ["reservation.held", "reservation.cancelled"])
            _ = try await api.registerWebhook(down.url, events: ["reservation.held"])
            let concert = try await api.openConcert()
            let token = try await api.activeToken(concert.concertId, user: 5)
            let first = try await api.hold(concert.scheduleId, seat: 1, user: 5, token: token).int("id")!
            let second = try await api.hold(concert.scheduleId, seat: 2, user: 5, token: token).int("id")!
            #expect(try await api.call(.delete, "/v1/reservations/\(first)", user: 5).status == 204)
            // Delivered: both holds and the first cancellation to the receiver; the holds' events
            // also wait for the receiver that is down (retried, PENDING).
            #expect(try await receiver.waitForAcknowledged(3).count == 3)
            for _ in 0..<400 where down.received.count < 2 { try await Task.sleep(for: .milliseconds(25)) }
            #expect(down.received.count >= 2, "the holds were tried at the receiver that is down")
            func deliveries() async throws -> [[String: Any]] {
                try await api.call(.get, "/v1/admin/webhooks/deliveries", user: 1, admin: true).array("deliveries")
            }
            let before = try await deliveries()
            #expect(before.count == 5)
            let oldCancellation = try #require(before.first { $0["type"] as? String == "reservation.cancelled" }?["eventId"] as? String)

            // Twenty minutes on, past the ten minutes' retention: the delivered cancellation goes;
            // the holds' events stay (a delivery of each is still being retried); a cancellation
            // now is delivered now and stays.
            api.clock.advance(seconds: 20 * 60)
            #expect(try await api.call(.delete, "/v1/reservations/\(second)", user: 5).status == 204)
            #expect(try await receiver.waitForAcknowledged(4).count == 4)
            var left: [[String: Any]] = []
            for _ in 0..<400 {
                left = try await deliveries()
                // (The receiver's answer is recorded just after it was sent: wait for both.)
                if left.count == 5, !left.contains(where: { $0["eventId"] as? String == oldCancellation }),
                   left.filter({ $0["state"] as? String == "PENDING" }).count == 2 { break }
                try await Task.sleep(for: .milliseconds(25))
            }
            #expect(!left.contains { $0["eventId"] as? String == oldCancellation }, "the old delivered event was deleted: \(left)")
            #expect(left.count == 5, "\(left)")
            #expect(left.filter { $0["state"] as? String == "PENDING" }.count == 2, "undelivered ones stay")
            #expect(left.filter { $0["type"] as? String == "reservation.cancelled" }.count == 1, "the recent one stays")
            let metrics = String(decoding: try await api.call(.get, "/metrics").bytes, as: UTF8.self)
            #expect(metrics.contains("concertd_webhook_events_pruned_total"))
        }
    }

    @Test func theRetentionSweepUsesTheClockDeletesInBatchesAndZeroKeepsEverything() async throws {
        let store = PruneRecordingStore(remaining: 1_234)
        let clock = ManualClock()
        var options = WebhookRelayOptions()
        options.retentionMilliseconds = 3 * 3_600_000
        options.retentionBatch = 500
        let guardrail = WebhookAddressGuard(resolver: LoopbackOnlyWebhookResolver(), allowPrivate: true)
        let relay = WebhookRelay(store: store, guard: guardrail, clock: clock.clock, options: options, logger: Logger(label: "test"))
        #expect(try await relay.pruneFinishedEvents() == 1_234)
        #expect(store.calls.map(\.limit) == [500, 500, 500], "batches until one comes back short")
        #expect(store.calls.allSatisfy { $0.before == clock.now.adding(milliseconds: -3 * 3_600_000) })

        options.retentionMilliseconds = 0
        let keeping = PruneRecordingStore(remaining: 10)
        let forever = WebhookRelay(store: keeping, guard: guardrail, clock: clock.clock, options: options, logger: Logger(label: "test"))
        #expect(try await forever.pruneFinishedEvents() == 0)
        #expect(keeping.calls.isEmpty, "0 keeps events forever: the store is never asked")
    }

    @Test func theRetentionSettingIsValidated() throws {
        #expect(try AppConfig.fromEnvironment([:]).webhookRetentionMilliseconds == 168 * 3_600_000)
        #expect(try AppConfig.fromEnvironment(["CONCERT_WEBHOOK_RETENTION_HOURS": "0"]).webhookRetentionMilliseconds == 0)
        #expect(try AppConfig.fromEnvironment(["CONCERT_WEBHOOK_RETENTION_HOURS": "24"]).webhookRetentionMilliseconds == 24 * 3_600_000)
        for bad in ["-1", "1.5", "week", "87601"] {
            do {
                _ = try AppConfig.fromEnvironment(["CONCERT_WEBHOOK_RETENTION_HOURS": bad])
                Issue.record("\(bad) was accepted")
            } catch {
                #expect("\(error)" == "CONCERT_WEBHOOK_RETENTION_HOURS must be an integer in 0...87600, got '\(bad)'")
            }
        }
    }
}

/// A webhook store that only counts retention calls: `remaining` finished events, handed out
/// `limit` at a time.
private final class PruneRecordingStore: WebhookStore, Sendable {
    private let state: Mutex<(remaining: Int, calls: [(before: Timestamp, limit: Int)])>
    init(remaining: Int) { state = Mutex((remaining, [])) }
    var calls: [(before: Timestamp, limit: Int)] { state.withLock { $0.calls } }

    func pruneWebhookEvents(before: Timestamp, limit: Int) async throws -> Int {
        state.withLock { state in
            state.calls.append((before, limit))
            let pruned = min(limit, state.remaining)
            state.remaining -= pruned
            return pruned
        }
    }
    func createWebhook(url: String, events: [String], secret: String, now: Timestamp) async throws -> Webhook {
        Webhook(id: 1, url: url, events: events, secret: secret, createdAt: now)
    }
    func webhooks() async throws -> [Webhook] { [] }
    func deleteWebhook(id: Int64) async throws -> Bool { false }
    func dispatchWebhookEvents(now: Timestamp, limit: Int) async throws -> Int { 0 }
    func claimWebhookDeliveries(now: Timestamp, leaseMilliseconds: Int64, limit: Int) async throws -> [WebhookDelivery] { [] }
    func recordWebhookAttempt(_ delivery: WebhookDelivery, outcome: WebhookAttemptOutcome, now: Timestamp) async throws {}
    func webhookBacklog() async throws -> WebhookBacklog { WebhookBacklog(undispatchedEvents: 0, pendingDeliveries: 0, oldest: nil) }
    func recentWebhookDeliveries(limit: Int) async throws -> [WebhookDeliveryRecord] { [] }
    func expireRunOutHolds(now: Timestamp, limit: Int) async throws -> Int { 0 }
}
