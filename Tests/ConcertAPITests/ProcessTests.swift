import ConcertAPI
import ConcertDomain
import ConcertServer
import ConcertTestSupport
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Synchronization
import Testing

@Suite("The concertd binary", .serialized)
struct ProcessTests {
    /// The per-concert gauges and the admissions counter a dashboard plots a sale with: in a
    /// process of its own (its own metrics registry), a line of three with a cap of one shows one
    /// ACTIVE, two WAITING and one admission within a few seconds of the sweeper's next look.
    @Test func metricsPlotEachConcertsLine() async throws {
        let server = try await ConcertdProcess(arguments: ["--database-url", "sqlite::memory:"],
                                               environment: ["CONCERT_JWT_SECRET": testSecret, "CONCERT_QUEUE_MAX_ACTIVE": "1"])
        do {
            let (concertId, _) = try await server.api.openConcert(seats: 5, price: 10)
            for user in 11...13 {
                let joined = try await server.api.call(.post, "/v1/concerts/\(concertId)/queue/tokens", jwt: try await JWTTestSigner.token(user: Int64(user)))
                #expect(joined.status == 201)
            }
            let expected = [#"concertd_queue_active{concert="\#(concertId)"} 1"#, #"concertd_queue_waiting{concert="\#(concertId)"} 2"#,
                            #"concertd_queue_admitted_last_minute{concert="\#(concertId)"} 1"#,
                            #"concertd_queue_admissions_total{concert="\#(concertId)"} 1"#]
            let deadline = ContinuousClock.now + .seconds(10)
            var text = ""
            repeat {
                text = await HTTPClient().send(server.baseURL, .get, "/metrics").text
                if expected.allSatisfy({ text.contains($0) }) { break }
                try await Task.sleep(for: .milliseconds(200))
            } while ContinuousClock.now < deadline
            for line in expected { #expect(text.contains(line), "missing \(line)") }
        } catch {
            _ = await server.stop()
            throw error
        }
        _ = await server.stop()
    }

    @Test func devModeServesTheDemoAndBooksASeatEndToEnd() async throws {
        let path = temporarySQLitePath()
        let server = try await ConcertdProcess(arguments: ["--dev", "--database-url", "sqlite:" + path])
        let token = try await runConcertd(["token", "--user", "42"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let concerts = try await server.api.call(.get, "/v1/concerts")
        #expect(concerts.status == 200)
        let first = (concerts.json["concerts"] as? [[String: Any]])?.first
        let concertId = try #require(first?["id"] as? Int)
        let queue = try await server.api.call(.post, "/v1/concerts/\(concertId)/queue/tokens", jwt: token)
        #expect(queue.status == 201)
        let queueToken = try #require(queue.json["token"] as? String)
        let schedules = try await server.api.call(.get, "/v1/concerts/\(concertId)/schedules", jwt: token, queueToken: queueToken)
        let scheduleId = try #require((schedules.json["schedules"] as? [[String: Any]])?.first?["id"] as? Int)
        let hold = try await server.api.call(.post, "/v1/reservations", jwt: token, queueToken: queueToken,
                                            json: #"{"scheduleId": \#(scheduleId), "seatNumber": 7}"#)
        #expect(hold.status == 201)
        #expect(try await server.api.call(.post, "/v1/points/charges", jwt: token, json: #"{"amount": 1000000}"#).status == 200)
        let paid = try await server.api.call(.post, "/v1/payments", jwt: token, queueToken: queueToken,
                                            json: #"{"reservationId": \#(hold.json["id"] as! Int)}"#)
        #expect(paid.status == 201)
        #expect(paid.json["status"] as? String == "PAID")
        #expect(await server.stop() == 0, "SIGTERM is a graceful shutdown")
        let verified = try await runConcertd(["verify", "--database-url", "sqlite:" + path])
        #expect(verified.status == 0, "\(verified.stdout)")
        #expect(verified.stdout.hasPrefix("ok"))
    }

    /// A body sent in chunks (no Content-Length) is cut off at 64 KiB while it is read.
    @Test func aChunkedBodyOver64KiBIs413() async throws {
        let server = try await ConcertdProcess(arguments: ["--dev", "--database-url", "sqlite::memory:"])
        let token = try await JWTTestSigner.token(user: 3, secret: AppConfig.devJWTSecret)
        var request = URLRequest(url: server.baseURL.appendingPathComponent("v1/points/charges"))
        request.httpMethod = "POST"
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        request.setValue("chunked", forHTTPHeaderField: "Transfer-Encoding")
        request.httpBodyStream = InputStream(data: Data(repeating: UInt8(ascii: " "), count: 70 * 1024))
        let (data, response) = try await URLSession.shared.data(for: request)
        let status = (response as! HTTPURLResponse).statusCode
        #expect(status == 413, "\(String(decoding: data, as: UTF8.self))")
        _ = await server.stop()
    }

    @Test func withoutASecretOrDevTheServerRefusesToStart() async throws {
        let result = try await runConcertd(["serve", "--port", "0", "--database-url", "sqlite::memory:"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("CONCERT_JWT_SECRET"))
        #expect(!result.stderr.contains("Fatal error"))
    }

    @Test func aSecretShorterThan32BytesStopsServeWithOneLine() async throws {
        let short = String(repeating: "k", count: 31)
        let result = try await runConcertd(["serve", "--port", "0", "--database-url", "sqlite::memory:"],
                                           environment: ["CONCERT_JWT_SECRET": short])
        #expect(result.status != 0)
        #expect(result.stderr.hasPrefix("concertd: CONCERT_JWT_SECRET must be at least 32 bytes"), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
        let token = try await runConcertd(["token", "--user", "1"], environment: ["CONCERT_JWT_SECRET": short])
        #expect(token.status != 0 && token.stderr.contains("at least 32 bytes") && !token.stderr.contains("Fatal error"), "\(token.stderr)")
        // One byte more starts.
        let server = try await ConcertdProcess(arguments: ["--database-url", "sqlite::memory:"],
                                               environment: ["CONCERT_JWT_SECRET": short + "k"])
        #expect(await server.stop() == 0)
    }

    @Test func anUnusableJWKSFileStopsServeWithOneLine() async throws {
        let path = AuthenticatorTests.temporaryPath("jwks.json")
        for contents in [nil, "{not json", #"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#] {
            if let contents { try Data(contents.utf8).write(to: URL(fileURLWithPath: path)) }
            let result = try await runConcertd(["serve", "--port", "0", "--database-url", "sqlite::memory:", "--jwks-file", path],
                                               environment: ["CONCERT_JWT_SECRET": testSecret])
            #expect(result.status != 0, "\(contents ?? "missing")")
            #expect(result.stderr.hasPrefix("concertd: CONCERT_JWT_JWKS_FILE \(path)"), "\(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
        }
    }

    /// Key rotation without a restart: SIGHUP reads the JWKS file again. The new key is accepted,
    /// the removed one refused (though its token was verified, and remembered, before), requests
    /// sent all along are answered, and a broken file on a later SIGHUP keeps the keys in force.
    @Test func sighupRotatesTheJWKSKeys() async throws {
        let path = AuthenticatorTests.temporaryPath("jwks.json")
        let old = try JWKSTestKeys(), new = try JWKSTestKeys()
        try JWKSTestKeys.writeKeySet([old.jwk(.es256, kid: "2026-01")], to: path)
        let server = try await ConcertdProcess(arguments: ["--database-url", "sqlite::memory:"],
                                               environment: ["CONCERT_JWT_SECRET": testSecret, "CONCERT_JWT_JWKS_FILE": path])
        let claims = AuthenticatorTests.claims(user: 31)
        let oldToken = try old.token(.es256, kid: "2026-01", payload: claims)
        let newToken = try new.token(.eddsa, kid: "2026-02", payload: claims)
        let hs256 = try await JWTTestSigner.token(user: 32)
        #expect(try await server.api.call(.get, "/v1/points", jwt: oldToken).status == 200)
        #expect(try await server.api.call(.get, "/v1/points", jwt: newToken).status == 401)

        // Requests with the shared secret's token run the whole time; none may fail. The loop is
        // stopped with a flag, not by cancelling the task: cancelling a URLSession request as it
        // completes can deadlock swift-corelibs-foundation (the cancel handler waits on the
        // session's queue while that queue resumes the same task).
        let stopSteady = StopFlag()
        let steady = Task {
            var statuses: [Int] = []
            while !stopSteady.isSet {
                let status = (try? await server.api.call(.get, "/v1/points", jwt: hs256).status) ?? -1
                statuses.append(status)
            }
            return statuses
        }
        try JWKSTestKeys.writeKeySet([new.jwk(.eddsa, kid: "2026-02")], to: path)
        #expect(kill(server.process.processIdentifier, SIGHUP) == 0)
        let deadline = Date().addingTimeInterval(10)
        var rotated = false
        while !rotated, Date() < deadline {
            rotated = try await server.api.call(.get, "/v1/points", jwt: newToken).status == 200
            if !rotated { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(rotated, "the new key is accepted after SIGHUP")
        #expect(try await server.api.call(.get, "/v1/points", jwt: oldToken).status == 401, "the removed key is refused")

        // A broken file: the reload fails and the keys stay as they were.
        try Data("{broken".utf8).write(to: URL(fileURLWithPath: path))
        #expect(kill(server.process.processIdentifier, SIGHUP) == 0)
        try await Task.sleep(for: .milliseconds(300))
        #expect(server.process.isRunning)
        #expect(try await server.api.call(.get, "/v1/points", jwt: newToken).status == 200)
        #expect(try await server.api.call(.get, "/v1/points", jwt: oldToken).status == 401)

        stopSteady.set()
        let statuses = await steady.value
        #expect(!statuses.isEmpty && statuses.allSatisfy { $0 == 200 }, "\(statuses.filter { $0 != 200 })")
        #expect(await server.stop() == 0)
    }

    @Test func unusableDatabaseURLsGiveOneClearLine() async throws {
        for url in ["mysql://x", "sqlite:", "sqlite:/nonexistent-dir/x/y.sqlite"] {
            let result = try await runConcertd(["serve", "--dev", "--port", "0", "--database-url", url])
            #expect(result.status != 0, "\(url)")
            #expect(result.stderr.hasPrefix("concertd: "), "\(url): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(url): \(result.stderr)")
        }
    }

    @Test func badSettingsFromFlagsOrEnvironmentGiveOneClearLine() async throws {
        let flag = try await runConcertd(["serve", "--dev", "--port", "0", "--database-url", "sqlite::memory:", "--hold-seconds", "0"])
        #expect(flag.status != 0)
        #expect(flag.stderr.contains("CONCERT_HOLD_SECONDS"), "\(flag.stderr)")
        let env = try await runConcertd(["serve", "--dev", "--port", "0", "--database-url", "sqlite::memory:"],
                                        environment: ["CONCERT_QUEUE_MAX_ACTIVE": "lots"])
        #expect(env.status != 0)
        #expect(env.stderr.hasPrefix("concertd: CONCERT_QUEUE_MAX_ACTIVE"), "\(env.stderr)")
        #expect(env.stderr.split(separator: "\n").count == 1)
    }

    @Test func flagsOverrideTheEnvironment() async throws {
        let server = try await ConcertdProcess(arguments: ["--dev", "--database-url", "sqlite::memory:", "--hold-seconds", "42"],
                                               environment: ["CONCERT_HOLD_SECONDS": "300"])
        let token = try await JWTTestSigner.token(user: 3, secret: AppConfig.devJWTSecret)
        let concerts = try await server.api.call(.get, "/v1/concerts")
        let concertId = try #require((concerts.json["concerts"] as? [[String: Any]])?.first?["id"] as? Int)
        let queue = try await server.api.call(.post, "/v1/concerts/\(concertId)/queue/tokens", jwt: token)
        let queueToken = try #require(queue.json["token"] as? String)
        let schedules = try await server.api.call(.get, "/v1/concerts/\(concertId)/schedules", jwt: token, queueToken: queueToken)
        let scheduleId = try #require((schedules.json["schedules"] as? [[String: Any]])?.first?["id"] as? Int)
        let hold = try await server.api.call(.post, "/v1/reservations", jwt: token, queueToken: queueToken,
                                            json: #"{"scheduleId": \#(scheduleId), "seatNumber": 1}"#)
        let created = try #require(RFC3339.parse(hold.json["createdAt"] as? String ?? ""))
        let until = try #require(RFC3339.parse(hold.json["heldUntil"] as? String ?? ""))
        #expect(until.milliseconds - created.milliseconds == 42_000)
        _ = await server.stop()
    }

    @Test func unreachablePostgresAtStartGivesOneClearLine() async throws {
        let (port, closed) = try OutageTests.closedPort()
        defer { withExtendedLifetime(closed) {} }
        let result = try await runConcertd(["serve", "--dev", "--port", "0", "--database-url", "postgres://app@127.0.0.1:\(port)/concerts"])
        #expect(result.status != 0)
        #expect(result.stderr.hasPrefix("concertd: "), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
        let malformed = try await runConcertd(["migrate", "--database-url", "postgres://nobody"])
        #expect(malformed.status != 0)
        #expect(malformed.stderr.hasPrefix("concertd: CONCERT_DATABASE_URL"), "\(malformed.stderr)")
    }

    @Test func migrateBringsAnEmptyDatabaseUpToDate() async throws {
        let path = temporarySQLitePath()
        let result = try await runConcertd(["migrate", "--database-url", "sqlite:" + path])
        #expect(result.status == 0, "\(result.stderr)")
        let again = try await runConcertd(["migrate", "--database-url", "sqlite:" + path])
        #expect(again.status == 0, "migrating twice is a no-op")
    }

    /// Two processes on one SQLite file: the database, not a process, decides who gets a seat.
    @Test func twoProcessesOnOneSQLiteFileNeverDoubleBook() async throws {
        let path = temporarySQLitePath()
        let env = ["CONCERT_JWT_SECRET": testSecret]
        _ = try await runConcertd(["migrate", "--database-url", "sqlite:" + path])
        let a = try await ConcertdProcess(arguments: ["--database-url", "sqlite:" + path], environment: env)
        let b = try await ConcertdProcess(arguments: ["--database-url", "sqlite:" + path], environment: env)
        let admin = try await JWTTestSigner.token(user: 1, admin: true)
        let concert = try await a.api.call(.post, "/v1/admin/concerts", jwt: admin, json: Fixture.concert(opensAt: "2020-01-01T00:00:00Z", closesAt: "2099-01-01T00:00:00Z"))
        let concertId = try #require(concert.json["id"] as? Int)
        let schedule = try await b.api.call(.post, "/v1/admin/concerts/\(concertId)/schedules", jwt: admin,
                                           json: Fixture.schedule(startsAt: "2098-01-01T00:00:00Z", price: 10, seats: 5))
        let scheduleId = try #require(schedule.json["id"] as? Int)
        // Each process has its own in-process waiting room: users join on the process they use.
        var users: [(server: ConcertdProcess, token: String, queue: String)] = []
        for user in 100..<160 {
            let server = user % 2 == 0 ? a : b
            let token = try await JWTTestSigner.token(user: Int64(user))
            let queue = try await server.api.call(.post, "/v1/concerts/\(concertId)/queue/tokens", jwt: token)
            users.append((server, token, queue.json["token"] as! String))
        }
        let gate = StartGate()
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for (server, token, queue) in users {
                group.addTask {
                    await gate.wait()
                    return try await server.api.call(.post, "/v1/reservations", jwt: token, queueToken: queue,
                                                    json: #"{"scheduleId": \#(scheduleId), "seatNumber": 3}"#).status
                }
            }
            await gate.open(whenArrived: users.count)
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(statuses.filter { $0 == 201 }.count == 1, "\(statuses)")
        #expect(statuses.filter { $0 == 409 }.count == 59)
        _ = await a.stop()
        _ = await b.stop()
    }
}

/// A flag one task sets and another polls.
final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    func set() { value.store(true, ordering: .releasing) }
}
