import ConcertDomain
import ConcertStore
import Hummingbird
import Logging
import SharedState

/// Payments [Q] (idempotent), reading them back, and refunds (idempotent, no queue token).
struct PaymentsController {
    let store: any ReservationStore & PaymentStore & IdempotencyStore
    let waitingRoom: any WaitingRoom
    let tokenClaims: any TokenClaims
    /// Set on PostgreSQL alone: the checks of `payChecked` and the payment in one database call.
    let ticketedPayments: (any TicketedPayments)?
    let cache: any ResponseCache
    let gate: QueueGate
    let clock: WallClock
    let rules: BookingRules

    struct PayRequestBody: Decodable {
        var reservationId: Int64
    }

    /// A refund takes no fields; an empty body and `{}` mean the same. Anything but a JSON object
    /// is refused (400): a synthesized `Decodable` with no fields would accept any JSON value.
    struct RefundRequestBody: Decodable {
        init() {}
        init(from decoder: any Decoder) throws {
            _ = try decoder.container(keyedBy: AnyKey.self)
        }
        private struct AnyKey: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
    }

    func addRoutes(to routes: inout Routes) {
        routes.add(.post, "/v1/payments", pay)
        routes.add(.get, "/v1/payments/{paymentId}", show)
        routes.add(.post, "/v1/payments/{paymentId}/refund", refund)
    }

    func pay(_ request: Request, context: AuthenticatedRequestContext) async throws -> Response {
        let caller = context.identity
        let body = try await JSONBody.decode(PayRequestBody.self, from: request)
        guard body.reservationId > 0 else { throw DomainError.reservationNotFound }
        let idempotency = Idempotency(store: store, clock: clock)
        // The queue check is written out here rather than left to `QueueTicketMiddleware`: a
        // replay is answered before it (the first payment ended the queue token), and paying twice
        // is answered as such before the token is looked at.
        // The token this request's own payment checked (nil for a replay, which checks nothing).
        var checkedToken: String?
        let response = try await idempotency.run(request: request, userId: caller.userId,
                                                 fingerprint: "POST /v1/payments reservationId=\(body.reservationId)") { completion in
            let token = try QueueGate.token(in: request)
            let idempotency = completion { (receipt: PaymentReceipt) in
                StoredResponse(status: 201, body: try JSONBody.encode(PaymentBody(receipt.payment, balance: receipt.balance)))
            }
            let receipt: PaymentReceipt
            if let ticketedPayments {
                // The checks below, in the same order, inside the payment's own database call.
                let claimedAt = clock.now()
                do {
                    receipt = try await ticketedPayments.pay(userId: caller.userId, reservationId: body.reservationId, token: token,
                                                             claimOwner: Self.claimOwner(request, caller: caller),
                                                             claimUntil: claimedAt.adding(seconds: Self.claimSeconds), now: claimedAt,
                                                             idempotency: idempotency)
                    BusinessMetrics.payment("ok")
                } catch {
                    // Counted as `payChecked` counts: the refusals of its checks are not payments.
                    if !Self.refusedBeforePaying(error) { BusinessMetrics.payment(BusinessMetrics.outcome(of: error)) }
                    throw error
                }
            } else {
                receipt = try await payChecked(body.reservationId, token: token, request: request, caller: caller,
                                               context: context, idempotency: idempotency)
            }
            checkedToken = token
            return try JSONBody.response(PaymentBody(receipt.payment, balance: receipt.balance), status: .created)
        }
        // A paid payment ends its token, and so does its replay: when the first answer was lost
        // with the token's end (a killed instance, an outage between the commit and the end), the
        // client's retry with the same key is what ends it. Otherwise the token stayed live and
        // claimed by the paid key, and a rejoin (which returns the live token) could not pay again
        // until the claim ran out.
        // A replay ends the token only if it is the caller's own.
        if response.status == .created, let token = try? QueueGate.token(in: request) {
            do {
                if checkedToken == nil {
                    guard let ticket = try await waitingRoom.poll(token: token, now: clock.now()),
                          ticket.userId == caller.userId else { return response }
                }
                try await waitingRoom.end(token: token, now: clock.now())
            } catch {
                // The payment stands and its claim keeps the token from paying again. The end is
                // still owed: until it happens a rejoin returns this live, claimed token, which
                // cannot pay for the claim's 60 s (FaultTests' PostgreSQL restart met that). So it
                // is tried again in the background until the waiting room answers.
                context.logger.warning("could not end the queue token after payment; retrying", metadata: ["error": "\(error)"])
                endEventually(token: token, logger: context.logger)
            }
        }
        return response
    }

    /// The payment with its token checked through the waiting room and claimed through
    /// `tokenClaims` first, a round trip each (every engine but PostgreSQL alone).
    private func payChecked(_ reservationId: Int64, token: String, request: Request, caller: Identity,
                            context: AuthenticatedRequestContext,
                            idempotency: IdempotentCompletion<PaymentReceipt>?) async throws -> PaymentReceipt {
        guard let reservation = try await store.reservation(id: reservationId, userId: caller.userId) else {
            throw DomainError.reservationNotFound
        }
        // Paying twice is answered as such even though the first payment ended the token.
        if reservation.storedStatus == .confirmed { throw DomainError.reservationAlreadyPaid }
        // One token, one purchase: the token's end is claimed before the payment writes, so a
        // second payment with the same token, through any instance, finds it taken and is
        // refused as for an ended token. A payment refused by a rule gives the claim back and
        // the token works on; one that commits ends the token. The claim runs out by itself
        // (a process killed here cannot strand the token) well after any payment finishes.
        let claimOwner = Self.claimOwner(request, caller: caller)
        let claimedAt = clock.now()
        guard try await tokenClaims.claim(token: token, owner: claimOwner, until: claimedAt.adding(seconds: Self.claimSeconds),
                                          now: claimedAt) else {
            throw DomainError.queueTokenInvalid
        }
        do {
            let ticket = try await gate.ticket(token, caller: caller)
            try QueueGate.admit(ticket, concertId: reservation.concertId)
            return try await BusinessMetrics.recording(BusinessMetrics.payment) {
                try await store.pay(userId: caller.userId, reservationId: reservationId, now: clock.now(), idempotency: idempotency)
            }
        } catch {
            do {
                try await tokenClaims.release(token: token, owner: claimOwner)
            } catch let releaseError {
                // The token stays claimed until the claim runs out; the refusal still stands.
                context.logger.warning("could not release a queue token claim", metadata: ["error": "\(releaseError)"])
            }
            throw error
        }
    }

    /// The refusals that `payChecked` answers before the payment is tried.
    private static func refusedBeforePaying(_ error: any Error) -> Bool {
        switch error as? DomainError {
        case .reservationNotFound?, .reservationAlreadyPaid?, .queueTokenInvalid?, .queueTokenNotActive?: true
        default: false
        }
    }

    /// Who claims the token: a payment with an Idempotency-Key claims as that key, so its own
    /// retry (after a fault cut it off, once the key's lease has passed) takes the claim again
    /// instead of finding the token taken; without a key every attempt is its own claimant.
    private static func claimOwner(_ request: Request, caller: Identity) -> String {
        request.headers[.idempotencyKey].map { "key:\(caller.userId):\($0)" } ?? QueueToken.make(concertId: 0)
    }

    /// Ends `token` as soon as the waiting room can be reached again, trying every 250 ms for as
    /// long as the payment's claim lasts (after that a rejoin is not blocked by it anyway).
    private func endEventually(token: String, logger: Logger) {
        let waitingRoom = self.waitingRoom, clock = self.clock
        Task {
            for _ in 0..<(Self.claimSeconds * 4) {
                try? await Task.sleep(for: .milliseconds(250))
                do {
                    try await waitingRoom.end(token: token, now: clock.now())
                    return
                } catch {
                    continue
                }
            }
            logger.warning("gave up ending a paid queue token; it runs out at its activeUntil")
        }
    }

    /// How long a payment's claim on its token lasts: longer than any payment can take (the
    /// request timeout is 30 s by default), short enough that a killed process frees the token soon.
    static let claimSeconds: Int64 = 60

    func show(_ request: Request, context: AuthenticatedRequestContext) async throws -> Response {
        let caller = context.identity
        let id = try request.pathId("paymentId", context: context, orElse: .paymentNotFound)
        guard let payment = try await store.payment(id: id, userId: caller.userId) else { throw DomainError.paymentNotFound }
        return try JSONBody.response(PaymentBody(payment, balance: nil))
    }

    /// The caller's own payment back, in one atomic step (see `PaymentStore.refund`). The
    /// fingerprint names the payment, so a key used for one payment's refund answers 422 on
    /// another's.
    func refund(_ request: Request, context: AuthenticatedRequestContext) async throws -> Response {
        let caller = context.identity
        let id = try request.pathId("paymentId", context: context, orElse: .paymentNotFound)
        _ = try await JSONBody.decode(RefundRequestBody.self, from: request, orIfEmpty: RefundRequestBody())
        let idempotency = Idempotency(store: store, clock: clock)
        return try await idempotency.run(request: request, userId: caller.userId,
                                         fingerprint: "POST /v1/payments/\(id)/refund") { completion in
            let receipt = try await BusinessMetrics.recording(BusinessMetrics.refund) {
                try await store.refund(userId: caller.userId, paymentId: id, now: clock.now(), rules: rules,
                                       idempotency: completion { receipt in
                    StoredResponse(status: 201, body: try JSONBody.encode(RefundBody(receipt)))
                })
            }
            await CacheAside(cache: cache, logger: context.logger).invalidate(CacheAside.schedules(of: receipt.concertId))
            return try JSONBody.response(RefundBody(receipt), status: .created)
        }
    }
}
