import ConcertStore
import ConcertTestSupport
import Foundation
import PostgresNIO
import Testing
@testable import ConcertPostgres

/// An operation that has its connection still answers in bounded time: when its connection
/// closes under it and the query is never answered (PostgresNIO 1.33.2 can lose one), or when
/// it runs past `operationLimit`. Either way the connection is closed and the lease handed back,
/// so the pool keeps serving and can still shut down.
@Suite("PostgreSQL operations that never finish", .serialized, .timeLimit(.minutes(1)))
struct PostgresWatchdogTests {
    static let enabled = TestServices.postgresURL != nil || TestServices.required

    func withStore(operationLimit: Duration, _ body: (PostgresConcertStore, TestDatabase) async throws -> Void) async throws {
        // Stopping the pool waits for every lease: a lost body would hang there.
        try await withPostgresStore(options: PostgresStoreOptions(maximumConnections: 2, operationLimit: operationLimit), body)
    }

    @Test(.enabled(if: enabled)) func aBodyWhoseConnectionClosedUnderItIsAbandonedAndItsLeaseReturned() async throws {
        try await withStore(operationLimit: .seconds(30)) { store, _ in
            let started = ContinuousClock.now
            await #expect(throws: StoreUnavailable.self) {
                try await store.withConnection { connection in
                    // What a lost query looks like from here: the connection is gone and
                    // nothing will ever answer.
                    try await connection.close()
                    try await Task.sleep(for: .seconds(120))
                }
            }
            let elapsed = ContinuousClock.now - started
            #expect(elapsed < .seconds(5), "answered after \(elapsed), not at the 30 s operation limit")
            for _ in 0..<4 { try await store.ping() } // the pool serves on
        }
    }

    @Test(.enabled(if: enabled)) func aBodyPastTheOperationLimitIsCutOffAndRolledBack() async throws {
        try await withStore(operationLimit: .seconds(1)) { store, database in
            let started = ContinuousClock.now
            await #expect(throws: StoreUnavailable.self) {
                try await store.transaction { connection in
                    _ = try await connection.query("INSERT INTO users (id, balance) VALUES (77, 5)", logger: TestServices.logger)
                    _ = try await connection.query("SELECT pg_sleep(8)", logger: TestServices.logger)
                }
            }
            let elapsed = ContinuousClock.now - started
            #expect(elapsed < .seconds(5), "cut off after \(elapsed), before the 8 s statement ended")
            try await store.ping()
            #expect(try await database.scalar("SELECT COUNT(*) FROM users WHERE id = 77") == 0, "the closed transaction rolled back")
        }
    }
}
