import ConcertStore
import Logging
import ServiceLifecycle
import SharedState

// INTEGRATION-PENDING: replaced when the PostgreSQL and Redis modules land.
func makePostgresStore(url: String, logger: Logger) throws -> (store: any ConcertStore, service: any Service) {
    throw ConfigError("PostgreSQL is not built in yet")
}

func makeRedisState(url: String, policy: ConcertDomain.QueuePolicy, logger: Logger) throws
    -> (waitingRoom: any WaitingRoom, cache: any ResponseCache, rateLimiter: any RateLimiter, services: [any Service]) {
    throw ConfigError("Redis is not built in yet")
}
import ConcertDomain
