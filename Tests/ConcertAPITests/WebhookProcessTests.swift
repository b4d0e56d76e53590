import ConcertServer
import ConcertTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Webhook delivery across real `concertd` processes on one database: SQLite on a file always,
/// PostgreSQL when the test servers are there.
@Suite("Webhook processes", .serialized)
struct WebhookProcessTests {
    enum Store: String, CustomTestStringConvertible, CaseIterable {
        case sqliteFile = "sqlite-file", postgres
        var testDescription: String { rawValue }
        static var available: [Store] { TestServices.postgresURL != nil || TestServices.required ? [.sqliteFile, .postgres] : [.sqliteFile] }
    }

    /// A fresh migrated database URL for `store`, and how to drop it.
    func database(_ store: Store) async throws -> (url: String, drop: @Sendable () async -> Void) {
        switch store {
        case .sqliteFile:
            let path = temporarySQLitePath()
            _ = try await runConcertd(["migrate", "--database-url", "sqlite:" + path])
            return ("sqlite:" + path, {})
        case .postgres:
            let admin = try #require(TestServices.postgresURL, "CONCERT_TEST_POSTGRES_URL is not set")
            let database = try await TestDatabase.create(adminURL: admin)
            _ = try await runConcertd(["migrate", "--database-url", database.url])
            return (database.url, { try? await database.drop() })
        }
    }

    static let environment = [
        "CONCERT_JWT_SECRET": testSecret, "CONCERT_WEBHOOK_ALLOW_PRIVATE": "1", "CONCERT_WEBHOOK_POLL_MS": "50",
        "CONCERT_WEBHOOK_RESOLVER": "loopback-only",
    ]

    /// Creates an open schedule through `server` and holds `count` seats as different users.
    func holdSeats(_ count: Int, through servers: [ConcertdProcess]) async throws {
        let (concertId, scheduleId) = try await servers[0].api.openConcert(seats: 100, price: 10)
        for seat in 1...count {
            let server = servers[seat % servers.count]
            let token = try await JWTTestSigner.token(user: Int64(100 + seat))
            let queue = try await server.api.call(.post, "/v1/concerts/\(concertId)/queue/tokens", jwt: token)
            let hold = try await server.api.call(.post, "/v1/reservations", jwt: token, queueToken: queue.json["token"] as? String,
                                                json: #"{"scheduleId": \#(scheduleId), "seatNumber": \#(seat)}"#)
            #expect(hold.status == 201, "\(hold.json)")
        }
    }

    func register(_ receiver: WebhookReceiver, on server: ConcertdProcess) async throws {
        let admin = try await JWTTestSigner.token(user: 1, admin: true)
        let reply = try await server.api.call(.post, "/v1/admin/webhooks", jwt: admin,
                                             json: #"{"url": "\#(receiver.url)", "events": ["reservation.held"]}"#)
        #expect(reply.status == 201, "\(reply.json)")
    }

    @Test(arguments: Store.available) func twoInstancesDeliverEachEventOnce(store: Store) async throws {
        let (url, drop) = try await database(store)
        let receiver = try await WebhookReceiver()
        let a = try await ConcertdProcess(arguments: ["--database-url", url], environment: Self.environment)
        let b = try await ConcertdProcess(arguments: ["--database-url", url], environment: Self.environment)
        try await register(receiver, on: a)
        try await holdSeats(40, through: [a, b])
        let got = try await receiver.waitForAcknowledged(40, timeout: .seconds(30))
        try await Task.sleep(for: .seconds(1))
        #expect(got.count == 40)
        #expect(receiver.received.count == 40, "an event was sent twice: \(receiver.received.count) posts for 40 events")
        _ = await a.stop()
        _ = await b.stop()
        await receiver.close()
        await drop()
    }

    @Test(arguments: Store.available) func aKilledInstanceLosesNoEvent(store: Store) async throws {
        let (url, drop) = try await database(store)
        let receiver = try await WebhookReceiver(status: 503)
        let a = try await ConcertdProcess(arguments: ["--database-url", url], environment: Self.environment)
        try await register(receiver, on: a)
        try await holdSeats(10, through: [a])
        // A has claimed and tried them (the receiver is down); then it dies without a word.
        for _ in 0..<200 where receiver.received.count < 10 { try await Task.sleep(for: .milliseconds(50)) }
        #expect(receiver.received.count >= 10)
        #expect(kill(a.process.processIdentifier, SIGKILL) == 0)
        _ = await a.stop()
        receiver.setStatus(200)
        let b = try await ConcertdProcess(arguments: ["--database-url", url], environment: Self.environment)
        let got = try await receiver.waitForAcknowledged(10, timeout: .seconds(60))
        #expect(got.count == 10, "events lost with the killed instance")
        #expect(Set(got.map(\.id)).count == 10)
        _ = await b.stop()
        await receiver.close()
        await drop()
    }

    /// kill -9 while the deliveries are in flight (the receiver hangs): their leases are held by a
    /// dead process; another instance claims them once the leases run out and delivers them.
    @Test(arguments: Store.available) func deliveriesInFlightOnAKilledInstanceAreTakenOverAfterTheLease(store: Store) async throws {
        let (url, drop) = try await database(store)
        let receiver = try await WebhookReceiver(status: 0)
        let a = try await ConcertdProcess(arguments: ["--database-url", url], environment: Self.environment)
        try await register(receiver, on: a)
        try await holdSeats(5, through: [a])
        for _ in 0..<200 where receiver.received.count < 5 { try await Task.sleep(for: .milliseconds(50)) }
        #expect(receiver.received.count >= 5, "A is waiting for the receiver's answers")
        #expect(kill(a.process.processIdentifier, SIGKILL) == 0)
        _ = await a.stop()
        receiver.setStatus(200)
        let b = try await ConcertdProcess(arguments: ["--database-url", url], environment: Self.environment)
        let got = try await receiver.waitForAcknowledged(5, timeout: .seconds(60))
        #expect(got.count == 5, "deliveries leased by the killed instance were lost")
        _ = await b.stop()
        await receiver.close()
        await drop()
    }
}
