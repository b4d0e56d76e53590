import ConcertAPI
import ConcertDomain
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

/// Where an `API`'s requests go: into the application in process, or over the network.
protocol Transport: Sendable {
    func send(_ method: HTTPRequest.Method, _ path: String, headers: HTTPFields, body: [UInt8]?) async throws -> Reply
}

/// Hummingbird's test client, on the router or on a live loopback server (`withAPI`).
struct InProcess: Transport {
    let client: any TestClientProtocol

    func send(_ method: HTTPRequest.Method, _ path: String, headers: HTTPFields, body: [UInt8]?) async throws -> Reply {
        try await client.execute(uri: path, method: method, headers: headers, body: body.map { ByteBuffer(bytes: $0) }) { response in
            Reply(status: Int(response.status.code), headers: response.headers, bytes: Array(buffer: response.body))
        }
    }
}

/// A `concertd` process (or nginx in front of some) at `base`, through `HTTPClient`.
struct Network: Transport {
    let client: HTTPClient
    let base: URL
    /// Throw when no answer comes (`ConcertdProcess`), rather than return the unanswered reply.
    var requireAnswer = false

    struct NoAnswer: Error, CustomStringConvertible { var description: String }

    func send(_ method: HTTPRequest.Method, _ path: String, headers: HTTPFields, body: [UInt8]?) async throws -> Reply {
        let reply = await client.send(base, method, path, headers: headers, body: body)
        if requireAnswer, !reply.answered { throw NoAnswer(description: "\(method.rawValue) \(path): \(reply)") }
        return reply
    }
}

/// Talks to the service under test, in process (`withAPI`) or over the network
/// (`ConcertdProcess.api`, `API(base, client:)`): one call signature, one set of fixtures.
struct API: Sendable {
    let transport: any Transport
    /// The in-process application's clock; nil over the network, where the processes run on the
    /// wall clock.
    private let manualClock: ManualClock?

    /// The in-process application's clock (`withAPI`), which a test moves on.
    var clock: ManualClock {
        guard let manualClock else { preconditionFailure("over the network the processes run on the wall clock") }
        return manualClock
    }

    init(client: any TestClientProtocol, clock: ManualClock) {
        transport = InProcess(client: client)
        manualClock = clock
    }

    init(_ base: URL, client: HTTPClient = HTTPClient(), requireAnswer: Bool = false) {
        transport = Network(client: client, base: base, requireAnswer: requireAnswer)
        manualClock = nil
    }

    /// The port the service listens on: a live in-process server's (`withAPI(live: true)`), or
    /// the process's.
    var port: Int? {
        switch transport {
        case let inProcess as InProcess: inProcess.client.port
        case let network as Network: network.base.port
        default: nil
        }
    }

    func token(user: Int64, admin: Bool = false, ttl: Int64 = 3600) async throws -> String {
        try await JWTTestSigner.token(user: user, admin: admin, ttl: ttl)
    }

    /// `user` signs the request with a fresh JWT for that user; `jwt` with the one given.
    @discardableResult
    func call(_ method: HTTPRequest.Method, _ path: String, user: Int64? = nil, admin: Bool = false, jwt: String? = nil,
              queueToken: String? = nil, idempotencyKey: String? = nil, headers extra: HTTPFields = [:],
              json: String? = nil, rawBody: [UInt8]? = nil) async throws -> Reply {
        var headers = extra
        var bearer = jwt
        if let user { bearer = try await token(user: user, admin: admin) }
        headers.addRequestHeaders(jwt: bearer, queueToken: queueToken, idempotencyKey: idempotencyKey, json: json != nil)
        return try await transport.send(method, path, headers: headers, body: json.map { Array($0.utf8) } ?? rawBody)
    }

    func time(_ offsetSeconds: Int64) -> String {
        RFC3339.format(Timestamp(seconds: clock.now.milliseconds / 1000 + offsetSeconds))
    }

    /// Creates a concert whose booking window is open and one schedule in the future. In process
    /// the times are offsets from the application's clock; over the network (the wall clock) the
    /// concert books from 2020 until 2099, its date in 2098.
    func openConcert(seats: Int = 50, price: Int64 = 1000, opens: Int64 = -3600, closes: Int64 = 86_400,
                     startsIn: Int64 = 7 * 86_400) async throws -> (concertId: Int64, scheduleId: Int64) {
        let (opensAt, closesAt, startsAt) = manualClock == nil
            ? ("2020-01-01T00:00:00Z", "2099-01-01T00:00:00Z", "2098-01-01T00:00:00Z")
            : (time(opens), time(closes), time(startsIn))
        let concert = try await call(.post, "/v1/admin/concerts", user: 1, admin: true,
                                     json: Fixture.concert(opensAt: opensAt, closesAt: closesAt))
        #expect(concert.status == 201)
        let concertId = try #require(concert.int("id"), "\(concert)")
        let schedule = try await call(.post, "/v1/admin/concerts/\(concertId)/schedules", user: 1, admin: true,
                                      json: Fixture.schedule(startsAt: startsAt, price: price, seats: seats))
        #expect(schedule.status == 201)
        return (concertId, try #require(schedule.int("id"), "\(schedule)"))
    }

    /// Joins the concert's line as `user` and returns the token.
    func join(_ concertId: Int64, user: Int64) async throws -> Reply {
        try await call(.post, "/v1/concerts/\(concertId)/queue/tokens", user: user)
    }

    func activeToken(_ concertId: Int64, user: Int64) async throws -> String {
        let reply = try await join(concertId, user: user)
        #expect(reply.string("status") == "ACTIVE", "user \(user) is not admitted: \(reply.json)")
        return reply.string("token")!
    }

    func hold(_ scheduleId: Int64, seat: Int, user: Int64, token: String) async throws -> Reply {
        try await call(.post, "/v1/reservations", user: user, queueToken: token,
                       json: #"{"scheduleId": \#(scheduleId), "seatNumber": \#(seat)}"#)
    }

    func charge(_ amount: Int64, user: Int64, key: String? = nil) async throws -> Reply {
        try await call(.post, "/v1/points/charges", user: user, idempotencyKey: key, json: #"{"amount": \#(amount)}"#)
    }

    func pay(_ reservationId: Int64, user: Int64, token: String?, key: String? = nil) async throws -> Reply {
        try await call(.post, "/v1/payments", user: user, queueToken: token, idempotencyKey: key,
                       json: #"{"reservationId": \#(reservationId)}"#)
    }

    func seatStatus(_ scheduleId: Int64, seat: Int, user: Int64, token: String) async throws -> String? {
        let reply = try await call(.get, "/v1/schedules/\(scheduleId)/seats", user: user, queueToken: token)
        return reply.array("seats").first { ($0["number"] as? Int) == seat }?["status"] as? String
    }
}
