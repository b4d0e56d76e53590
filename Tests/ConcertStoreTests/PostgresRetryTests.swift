import ConcertDomain
import ConcertPostgres
import ConcertStore
import ConcertTestSupport
import Foundation
import Testing

/// PostgreSQL resolves serialization failures and deadlocks by aborting one transaction; the store
/// retries such a transaction, a bounded number of times. A trigger makes the first N attempts of
/// a charge fail with SQLSTATE 40001 (the count lives in a sequence, which no rollback undoes).
@Suite("PostgreSQL transaction retries", .serialized)
struct PostgresRetryTests {
    static let enabled = TestServices.postgresURL != nil || TestServices.required

    func withFailingCharges(failures: Int, _ body: (PostgresConcertStore) async throws -> Void) async throws {
        try await withPostgresStore(options: PostgresStoreOptions(transactionAttempts: 3)) { store, database in
            _ = try await database.scalar("CREATE SEQUENCE charge_failures")
            _ = try await database.scalar("""
                CREATE FUNCTION fail_first_charges() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                  IF nextval('charge_failures') <= \(failures) THEN
                    RAISE EXCEPTION 'injected serialization failure' USING ERRCODE = '40001';
                  END IF;
                  RETURN NEW;
                END $$
                """)
            _ = try await database.scalar("""
                CREATE TRIGGER fail_first_charges BEFORE INSERT ON point_entries
                  FOR EACH ROW EXECUTE FUNCTION fail_first_charges()
                """)
            try await body(store)
        }
    }

    @Test(.enabled(if: enabled)) func aTransactionAbortedTwiceSucceedsOnItsThirdAttemptAndAppliesOnce() async throws {
        try await withFailingCharges(failures: 2) { store in
            let balance = try await store.charge(userId: 1, amount: 100, now: now, rules: rules, idempotency: nil)
            let history = try await store.history(userId: 1)
            #expect(balance == 100 && history.count == 1)
        }
    }

    @Test(.enabled(if: enabled)) func retriesAreBoundedAndAFinalFailureChangesNothing() async throws {
        try await withFailingCharges(failures: 3) { store in
            // Used-up retries are unavailability (503 with Retry-After), not a fault of ours.
            await #expect(throws: StoreUnavailable.self) {
                try await store.charge(userId: 1, amount: 100, now: now, rules: rules, idempotency: nil)
            }
            let balance = try await store.balance(userId: 1)
            let history = try await store.history(userId: 1)
            #expect(balance == 0 && history.isEmpty)
            // The fourth attempt (a new request) goes through: exactly three were made before.
            let next = try await store.charge(userId: 1, amount: 5, now: now, rules: rules, idempotency: nil)
            #expect(next == 5)
        }
    }
}
