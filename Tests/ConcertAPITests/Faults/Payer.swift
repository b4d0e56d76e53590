import Foundation
import Synchronization

/// A payment the test steers: a user with a hold, paying with one Idempotency-Key.
final class Payer: Sendable {
    static let charge = 100
    let user: Int
    let jwt: String
    let concertId: Int64
    let reservationId: Int64
    let queue: Mutex<String>
    var key: String { "pay-\(user)-\(reservationId)" }

    init(user: Int, jwt: String, concertId: Int64, reservationId: Int64, queue: String) {
        self.user = user
        self.jwt = jwt
        self.concertId = concertId
        self.reservationId = reservationId
        self.queue = Mutex(queue)
    }

    func pay(via base: URL, client: HTTPClient) async -> Reply {
        await client.send(base, .post, "/v1/payments", jwt: jwt, queueToken: queue.withLock { $0 }, idempotencyKey: key,
                          json: #"{"reservationId": \#(reservationId)}"#)
    }

    /// Retries the payment with its key as a client would: after a 5xx, a lost connection or 409
    /// IDEMPOTENCY_KEY_IN_USE it tries again; after 401 QUEUE_TOKEN_INVALID it rejoins first.
    func settle(via base: URL, client: HTTPClient, seconds: Double) async -> (final: Reply, attempts: [Reply], rejoins: Int) {
        var attempts: [Reply] = []
        var rejoins = 0
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while true {
            let answer = await pay(via: base, client: client)
            attempts.append(answer)
            if answer.code == "QUEUE_TOKEN_INVALID" {
                let joined = await client.send(base, .post, "/v1/concerts/\(concertId)/queue/tokens", jwt: jwt)
                if let token = joined.string("token") { queue.withLock { $0 = token } }
                rejoins += 1
            } else if !answer.isRetryable {
                return (answer, attempts, rejoins)
            }
            if ContinuousClock.now > deadline { return (answer, attempts, rejoins) }
            try? await Task.sleep(for: .milliseconds(200))
        }
    }
}
