import ConcertDomain
import ConcertStore
import Hummingbird
import Prometheus
import SharedState
import Webhooks

/// What `buildRouter` hands out to the controllers, built once by `buildApplication` and shared
/// by all requests. Each controller keeps only the parts it uses.
struct Dependencies: Sendable {
    var store: any ConcertStore
    var waitingRoom: any WaitingRoom
    var cache: any ResponseCache
    var rateLimiter: any RateLimiter
    var policies: LinePolicies
    var tokenClaims: any TokenClaims
    var ticketedWrites: (any TicketedPayments & TicketedHolds)?
    var authenticator: Authenticator
    var clock: WallClock
    var config: AppConfig
    var webhookGuard: WebhookAddressGuard

    var queueGate: QueueGate { QueueGate(waitingRoom: waitingRoom, clock: clock) }

    /// Every endpoint, each controller holding only what it uses.
    func routes(registry: PrometheusCollectorRegistry) -> Routes {
        var routes = Routes()
        let web = WebController(devTokens: config.dev ? authenticator : nil)
        web.addRoutes(to: &routes)
        OperationsController(store: store, waitingRoom: waitingRoom, registry: registry).addRoutes(to: &routes)
        ConcertsController(store: store, cache: cache, clock: clock, cacheTTLMilliseconds: config.cacheTTLMilliseconds)
            .addRoutes(to: &routes)
        web.addDevRoutes(to: &routes)
        QueueController(waitingRoom: waitingRoom, policies: policies, clock: clock).addRoutes(to: &routes)
        OnSaleController(store: store, waitingRoom: waitingRoom, policies: policies, cache: cache, clock: clock).addRoutes(to: &routes)
        SchedulesController(store: store, cache: cache, clock: clock,
                            cacheTTLMilliseconds: config.scheduleCacheTTLMilliseconds).addRoutes(to: &routes)
        ReservationsController(store: store, ticketedHolds: ticketedWrites, gate: queueGate, cache: cache, clock: clock, rules: config.rules)
            .addRoutes(to: &routes)
        PointsController(store: store, clock: clock, rules: config.rules).addRoutes(to: &routes)
        PaymentsController(store: store, waitingRoom: waitingRoom, tokenClaims: tokenClaims, ticketedPayments: ticketedWrites,
                           cache: cache, gate: queueGate,
                           clock: clock, rules: config.rules).addRoutes(to: &routes)
        AdminController(store: store, waitingRoom: waitingRoom, cache: cache, clock: clock).addRoutes(to: &routes)
        WebhooksController(store: store, guardrail: webhookGuard, clock: clock).addRoutes(to: &routes)
        return routes
    }
}
