import ConcertDomain
import ConcertInProcess
import ConcertPostgres
import ConcertRedis
import SharedState
import Testing

let responseCacheImplementations: [Implementation<any ResponseCache>] = Implementation.all(
    inProcess: { InProcessResponseCache() },
    redis: { pool, prefix in GenerationCheckedCache(generations: RedisCacheGenerations(pool: pool, keyPrefix: prefix)) },
    postgres: { store in GenerationCheckedCache(generations: PostgresCacheGenerations(store: store)) }
)

private let t0 = Timestamp(milliseconds: 1_750_000_000_000)

@Suite("Response cache semantics")
struct ResponseCacheTests {
    @Test(arguments: responseCacheImplementations)
    func storesAndReturnsBytesExactly(_ implementation: Implementation<any ResponseCache>) async throws {
        try await implementation.with { cache async throws in
            #expect(try await cache.get(namespace: "concerts", key: "list", now: t0) == nil)
            let binary = (0...255).map { UInt8($0) }
            try await cache.set(namespace: "concerts", key: "list", value: binary, expiresAt: t0.adding(seconds: 60), now: t0)
            try await cache.set(namespace: "concerts", key: "empty", value: [], expiresAt: t0.adding(seconds: 60), now: t0)
            #expect(try await cache.get(namespace: "concerts", key: "list", now: t0) == binary)
            #expect(try await cache.get(namespace: "concerts", key: "empty", now: t0) == [])
            try await cache.set(namespace: "concerts", key: "list", value: [1, 2, 3], expiresAt: t0.adding(seconds: 60), now: t0)
            #expect(try await cache.get(namespace: "concerts", key: "list", now: t0) == [1, 2, 3])
        }
    }

    @Test(arguments: responseCacheImplementations)
    func entriesExpireAtTheirTime(_ implementation: Implementation<any ResponseCache>) async throws {
        try await implementation.with { cache async throws in
            try await cache.set(namespace: "n", key: "k", value: [7], expiresAt: t0.adding(milliseconds: 5000), now: t0)
            #expect(try await cache.get(namespace: "n", key: "k", now: t0.adding(milliseconds: 4999)) == [7])
            #expect(try await cache.get(namespace: "n", key: "k", now: t0.adding(milliseconds: 5000)) == nil)
            // Already expired when set: not stored at all.
            try await cache.set(namespace: "n", key: "old", value: [1], expiresAt: t0, now: t0)
            #expect(try await cache.get(namespace: "n", key: "old", now: t0.adding(milliseconds: -1000)) == nil)
        }
    }

    @Test(arguments: responseCacheImplementations)
    func invalidateDropsOneNamespaceWhole(_ implementation: Implementation<any ResponseCache>) async throws {
        try await implementation.with { cache async throws in
            let later = t0.adding(seconds: 60)
            for key in ["a", "b", "c"] {
                try await cache.set(namespace: "concerts", key: key, value: [1], expiresAt: later, now: t0)
                try await cache.set(namespace: "schedules", key: key, value: [2], expiresAt: later, now: t0)
            }
            try await cache.invalidate(namespace: "concerts")
            for key in ["a", "b", "c"] {
                #expect(try await cache.get(namespace: "concerts", key: key, now: t0) == nil)
                #expect(try await cache.get(namespace: "schedules", key: key, now: t0) == [2])
            }
            try await cache.set(namespace: "concerts", key: "a", value: [3], expiresAt: later, now: t0)
            #expect(try await cache.get(namespace: "concerts", key: "a", now: t0) == [3])
            try await cache.invalidate(namespace: "never-used")
        }
    }

    @Test(arguments: responseCacheImplementations)
    func namespacesAndKeysDoNotRunTogether(_ implementation: Implementation<any ResponseCache>) async throws {
        try await implementation.with { cache async throws in
            let later = t0.adding(seconds: 60)
            try await cache.set(namespace: "a:b", key: "c", value: [1], expiresAt: later, now: t0)
            try await cache.set(namespace: "a", key: "b:c", value: [2], expiresAt: later, now: t0)
            #expect(try await cache.get(namespace: "a:b", key: "c", now: t0) == [1])
            #expect(try await cache.get(namespace: "a", key: "b:c", now: t0) == [2])
            try await cache.invalidate(namespace: "a")
            #expect(try await cache.get(namespace: "a:b", key: "c", now: t0) == [1])
            #expect(try await cache.get(namespace: "a", key: "b:c", now: t0) == nil)
        }
    }
}
