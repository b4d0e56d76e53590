import ConcertAPI
import ConcertTestSupport
import Foundation
import Synchronization

struct Ledger: Sendable {
    /// Points each user was told were charged.
    var charged: [Int: Int] = [:]
    /// Reservations the clients were told were paid.
    var paid: [Int64] = []
    var paidBy: [Int: Int] = [:]
    /// Charges or payments that never reached a final answer.
    var unsettled: [String] = []
    var rejoins = 0

    mutating func merge(_ other: Ledger) {
        charged.merge(other.charged, uniquingKeysWith: +)
        paid += other.paid
        paidBy.merge(other.paidBy, uniquingKeysWith: +)
        unsettled += other.unsettled
        rejoins += other.rejoins
    }
}

/// A few users, each in a loop through nginx: join the line, charge, hold a seat, pay; charges
/// and payments carry an Idempotency-Key and are retried with it until they get a final answer,
/// as the contract asks clients to.
final class Load: Sendable {
    let client: HTTPClient
    let base: URL
    let concertId: Int64
    let scheduleId: Int64
    let users: [Int]
    private let nextSeat: Mutex<Int>
    private let marks = Mutex<[(String, ContinuousClock.Instant)]>([])

    init(cluster: FaultCluster, concertId: Int64, scheduleId: Int64, users: [Int], firstSeat: Int, client: HTTPClient = HTTPClient()) {
        self.client = client
        self.base = cluster.nginx.baseURL
        self.concertId = concertId
        self.scheduleId = scheduleId
        self.users = users
        self.nextSeat = Mutex(firstSeat)
        cluster.register(self)
    }

    var calls: [Call] { client.calls }

    func mark(_ what: String, at instant: ContinuousClock.Instant) { marks.withLock { $0.append((what, instant)) } }

    private let stopped = Mutex(false)

    /// Ends the load: each user finishes the step it is in (settling it) and stops.
    func stop() { stopped.withLock { $0 = true } }

    /// Runs until `stop()`, or `seconds` at most.
    func run(seconds: Double = 60) async -> Ledger {
        let stopAt = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        let jwts = await withTaskGroup(of: (Int, String).self) { group in
            for user in users {
                group.addTask { (user, (try? await JWTTestSigner.token(user: Int64(user))) ?? "") }
            }
            return await group.reduce(into: [Int: String]()) { $0[$1.0] = $1.1 }
        }
        return await withTaskGroup(of: Ledger.self) { group in
            for user in users {
                group.addTask { await self.user(user, jwt: jwts[user]!, until: stopAt) }
            }
            return await group.reduce(into: Ledger()) { $0.merge($1) }
        }
    }

    private func user(_ user: Int, jwt: String, until stopAt: ContinuousClock.Instant) async -> Ledger {
        var ledger = Ledger()
        var queue: String?
        var round = 0
        while ContinuousClock.now < stopAt, !stopped.withLock({ $0 }) {
            // A steady, modest pace: each user starts a round every 250 ms at most.
            if round > 0 { try? await Task.sleep(for: .milliseconds(250)) }
            round += 1
            if queue == nil {
                let joined = await client.send(base, .post, "/v1/concerts/\(concertId)/queue/tokens", jwt: jwt)
                guard joined.string("status") == "ACTIVE", let token = joined.string("token") else {
                    try? await Task.sleep(for: .milliseconds(100))
                    continue
                }
                queue = token
            }
            let thisRound = round
            let charge = await settle(&queue, jwt: jwt) { [client, base] _ in
                await client.send(base, .post, "/v1/points/charges", jwt: jwt, idempotencyKey: "charge-\(user)-\(thisRound)",
                                  json: #"{"amount": \#(FaultTests.price)}"#)
            }
            ledger.rejoins += charge.rejoins
            if charge.final.status == 200 {
                ledger.charged[user, default: 0] += FaultTests.price
            } else {
                if charge.final.isRetryable { ledger.unsettled.append("charge-\(user)-\(round): \(charge.final)") }
                continue
            }
            let seat = nextSeat.withLock { seat in
                defer { seat += 1 }
                return seat
            }
            let hold = await client.send(base, .post, "/v1/reservations", jwt: jwt, queueToken: queue,
                                         json: #"{"scheduleId": \#(scheduleId), "seatNumber": \#(seat)}"#)
            if hold.code == "QUEUE_TOKEN_INVALID" || hold.code == "QUEUE_TOKEN_NOT_ACTIVE" { queue = nil; ledger.rejoins += 1 }
            guard hold.status == 201, let reservation = hold.int("id") else { continue }
            let pay = await settle(&queue, jwt: jwt) { [client, base] queue in
                await client.send(base, .post, "/v1/payments", jwt: jwt, queueToken: queue, idempotencyKey: "pay-\(user)-\(thisRound)",
                                  json: #"{"reservationId": \#(reservation)}"#)
            }
            ledger.rejoins += pay.rejoins
            if pay.final.status == 201 {
                ledger.paid.append(reservation)
                ledger.paidBy[user, default: 0] += 1
                queue = nil  // paying ends the token
            } else {
                ledger.unsettled.append("pay-\(user)-\(round): \(pay.final)")
            }
        }
        return ledger
    }

    /// Retries with the same request (and key) until a final answer or 30 s; rejoins the line on
    /// 401 QUEUE_TOKEN_INVALID.
    private func settle(_ queue: inout String?, jwt: String, _ attempt: @Sendable (String?) async -> Reply) async -> (final: Reply, rejoins: Int) {
        let deadline = ContinuousClock.now + .seconds(30)
        var rejoins = 0
        while true {
            let answer = await attempt(queue)
            if answer.code == "QUEUE_TOKEN_INVALID" {
                let joined = await client.send(base, .post, "/v1/concerts/\(concertId)/queue/tokens", jwt: jwt)
                if let token = joined.string("token") { queue = token }
                rejoins += 1
            } else if !answer.isRetryable {
                return (answer, rejoins)
            }
            if ContinuousClock.now > deadline { return (answer, rejoins) }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    func waitForSuccesses(_ count: Int, after instant: ContinuousClock.Instant = .now - .seconds(3600), seconds: Double) async -> Bool {
        await Subprocess.eventually(seconds: seconds) {
            self.calls.filter { $0.started > instant && (200..<300).contains($0.status ?? 0) }.count >= count
        }
    }

    /// Lets the load run on until it has had `count` more successes (or 30 s), then stops it.
    func finish(afterSuccesses count: Int, after instant: ContinuousClock.Instant) async {
        _ = await waitForSuccesses(count, after: instant, seconds: 30)
        stop()
    }

    func waitForStatus(_ status: Int, after instant: ContinuousClock.Instant, seconds: Double) async -> Bool {
        await Subprocess.eventually(seconds: seconds) { self.calls.contains { $0.started >= instant && $0.status == status } }
    }
}
