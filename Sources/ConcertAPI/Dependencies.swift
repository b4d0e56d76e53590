import ConcertDomain
import ConcertStore
import Hummingbird
import SharedState

/// Everything a route needs, built once by `buildApplication` and shared by all requests.
struct Dependencies: Sendable {
    var store: any ConcertStore
    var waitingRoom: any WaitingRoom
    var cache: any ResponseCache
    var rateLimiter: any RateLimiter
    var authenticator: Authenticator
    var clock: WallClock
    var config: AppConfig

    var rules: BookingRules { config.rules }

    var queueGate: QueueGate { QueueGate(waitingRoom: waitingRoom, clock: clock) }

    func cacheAside(_ context: AppRequestContext) -> CacheAside { CacheAside(cache: cache, logger: context.logger) }
}
