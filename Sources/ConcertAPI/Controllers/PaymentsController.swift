import ConcertDomain
import ConcertStore
import Hummingbird
import SharedState

/// Payments [Q] (idempotent) and reading them back.
struct PaymentsController {
    let store: any ReservationStore & PaymentStore & IdempotencyStore
    let waitingRoom: any WaitingRoom
    let gate: QueueGate
    let clock: WallClock

    struct PayRequestBody: Decodable {
        var reservationId: Int64
    }

    func addRoutes(to routes: inout Routes) {
        routes.add(.post, "/v1/payments", pay)
        routes.add(.get, "/v1/payments/{paymentId}", show)
    }

    func pay(_ request: Request, context: AuthenticatedRequestContext) async throws -> Response {
        let caller = context.identity
        let body = try await JSONBody.decode(PayRequestBody.self, from: request)
        guard body.reservationId > 0 else { throw DomainError.reservationNotFound }
        let idempotency = Idempotency(store: store, clock: clock)
        // The queue check is written out here rather than left to `QueueTicketMiddleware`: a
        // replay is answered before it (the first payment ended the queue token), and paying twice
        // is answered as such before the token is looked at.
        return try await idempotency.run(request: request, userId: caller.userId,
                                         fingerprint: "POST /v1/payments reservationId=\(body.reservationId)") { completion in
            let token = try QueueGate.token(in: request)
            guard let reservation = try await store.reservation(id: body.reservationId, userId: caller.userId) else {
                throw DomainError.reservationNotFound
            }
            // Paying twice is answered as such even though the first payment ended the token.
            if reservation.storedStatus == .confirmed { throw DomainError.reservationAlreadyPaid }
            let ticket = try await gate.ticket(token, caller: caller)
            try QueueGate.admit(ticket, concertId: reservation.concertId)
            let receipt = try await BusinessMetrics.recording(BusinessMetrics.payment) {
                try await store.pay(userId: caller.userId, reservationId: body.reservationId, now: clock.now(),
                                    idempotency: completion { receipt in
                    StoredResponse(status: 201, body: try JSONBody.encode(PaymentBody(receipt.payment, balance: receipt.balance)))
                })
            }
            do {
                try await waitingRoom.end(token: token, now: clock.now())
            } catch {
                // The payment stands; the token still runs out by itself.
                context.logger.warning("could not end the queue token after payment", metadata: ["error": "\(error)"])
            }
            return try JSONBody.response(PaymentBody(receipt.payment, balance: receipt.balance), status: .created)
        }
    }

    func show(_ request: Request, context: AuthenticatedRequestContext) async throws -> Response {
        let caller = context.identity
        let id = try request.pathId("paymentId", context: context, orElse: .paymentNotFound)
        guard let payment = try await store.payment(id: id, userId: caller.userId) else { throw DomainError.paymentNotFound }
        return try JSONBody.response(PaymentBody(payment, balance: nil))
    }
}
