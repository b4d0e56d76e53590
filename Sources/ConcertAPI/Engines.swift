import ConcertStore
import ServiceLifecycle
import SharedState

/// The storage and shared state the HTTP layer runs on. Which engines they are is chosen outside
/// it, by the composition root (`Engines.make` in `ConcertServer`); here they are protocols only.
public struct Engines: Sendable {
    public var store: any ConcertStore
    public var waitingRoom: any WaitingRoom
    public var cache: any ResponseCache
    public var rateLimiter: any RateLimiter
    /// Each concert's line policy, seats and draw as this instance sees them; the waiting room's
    /// policy source.
    public var linePolicies: LinePolicies
    /// Where a payment claims the end of its queue token; shared like the waiting room.
    public var tokenClaims: any TokenClaims
    /// Holds and payments that check their queue token in their own database call (a payment
    /// claims it there too), when the waiting room and the claims live in the store's database
    /// (PostgreSQL alone); nil elsewhere. Those holds and payments do not go through `waitingRoom`
    /// or `tokenClaims` (a test that wraps either sees only the other calls).
    public var ticketedWrites: (any TicketedPayments & TicketedHolds)?
    /// Long-running parts (connection pools) that the application's service group runs.
    public var services: [any Service]
    /// Told to the operator once the database is ready (e.g. a set-up that cannot share its
    /// waiting room with other instances).
    public var startupWarnings: [String]

    public init(store: any ConcertStore, waitingRoom: any WaitingRoom, cache: any ResponseCache, rateLimiter: any RateLimiter,
                linePolicies: LinePolicies, tokenClaims: any TokenClaims, ticketedWrites: (any TicketedPayments & TicketedHolds)? = nil,
                services: [any Service] = [], startupWarnings: [String] = []) {
        self.store = store
        self.linePolicies = linePolicies
        self.waitingRoom = waitingRoom
        self.cache = cache
        self.rateLimiter = rateLimiter
        self.tokenClaims = tokenClaims
        self.ticketedWrites = ticketedWrites
        self.services = services
        self.startupWarnings = startupWarnings
    }
}
