import ConcertDomain
import Logging
import SharedState

/// Cache-aside over a `ResponseCache`: answer with a stored body, else build it and store it.
///
/// The cache only saves work; it never decides anything. When it cannot be reached (Redis down)
/// the body is built from the database, and a failed invalidation is logged, not fatal: entries
/// live at most until their `expiresAt`, which callers keep short.
struct CacheAside: Sendable {
    let cache: any ResponseCache
    let logger: Logger

    static let concertList = "concerts"
    static func schedules(of concertId: Int64) -> String { "schedules:\(concertId)" }

    func body(namespace: String, key: String, now: Timestamp,
              make: () async throws -> (body: [UInt8], expiresAt: Timestamp)) async throws -> [UInt8] {
        do {
            if let cached = try await cache.get(namespace: namespace, key: key, now: now) { return cached }
        } catch {
            logger.debug("cache read failed; answering from the database", metadata: ["error": "\(error)"])
        }
        let made = try await make()
        do {
            try await cache.set(namespace: namespace, key: key, value: made.body, expiresAt: made.expiresAt, now: now)
        } catch {
            logger.debug("cache write failed", metadata: ["error": "\(error)"])
        }
        return made.body
    }

    func invalidate(_ namespaces: String...) async {
        for namespace in namespaces {
            do {
                try await cache.invalidate(namespace: namespace)
            } catch {
                logger.warning("cache invalidation failed", metadata: ["namespace": "\(namespace)", "error": "\(error)"])
            }
        }
    }
}
