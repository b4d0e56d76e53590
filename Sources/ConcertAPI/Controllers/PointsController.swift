import ConcertDomain
import ConcertStore
import Hummingbird

/// Points: balance, charges (idempotent) and history.
struct PointsController {
    let store: any WalletStore & IdempotencyStore
    let clock: WallClock
    let rules: BookingRules

    struct ChargeRequestBody: Decodable {
        var amount: Int64
    }

    func addRoutes(to routes: inout Routes) {
        routes.add(.get, "/v1/points", balance)
        routes.add(.post, "/v1/points/charges", charge)
        routes.add(.get, "/v1/points/history", history)
    }

    func balance(_ request: Request, context: AuthenticatedRequestContext) async throws -> Response {
        let caller = context.identity
        return try JSONBody.response(BalanceBody(balance: try await store.balance(userId: caller.userId)))
    }

    func charge(_ request: Request, context: AuthenticatedRequestContext) async throws -> Response {
        let caller = context.identity
        let body = try await JSONBody.decode(ChargeRequestBody.self, from: request)
        // Checked before the key is claimed, so a rejected amount never occupies a key.
        try WalletPolicy.checkCharge(amount: body.amount, balance: 0, rules: rules)
        let idempotency = Idempotency(store: store, clock: clock)
        return try await idempotency.run(request: request, userId: caller.userId,
                                         fingerprint: "POST /v1/points/charges amount=\(body.amount)") { completion in
            let balance = try await BusinessMetrics.recording(BusinessMetrics.charge) {
                try await store.charge(userId: caller.userId, amount: body.amount, now: clock.now(),
                                       rules: rules, idempotency: completion { balance in
                    StoredResponse(status: 200, body: try JSONBody.encode(BalanceBody(balance: balance)))
                })
            }
            return try JSONBody.response(BalanceBody(balance: balance))
        }
    }

    func history(_ request: Request, context: AuthenticatedRequestContext) async throws -> Response {
        let caller = context.identity
        let entries = try await store.history(userId: caller.userId)
        return try JSONBody.response(PointHistoryBody(entries: entries.map {
            PointEntryBody(id: $0.id, type: $0.type, amount: $0.amount, balanceAfter: $0.balanceAfter, createdAt: WireTime($0.createdAt))
        }))
    }
}
