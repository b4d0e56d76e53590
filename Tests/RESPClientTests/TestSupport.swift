import ConcertTestSupport
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the tests find Redis: `CONCERT_TEST_REDIS_URL`. Without it the Redis tests are skipped,
/// unless `CONCERT_TEST_REQUIRE_SERVICES=1`, when `redisIsConfiguredWhenRequired` fails.
enum TestEnvironment {
    static var redisURL: String? { TestServices.redisURL }
    static var servicesRequired: Bool { TestServices.required }

    /// A key prefix no other test uses, so tests can share one Redis and run in parallel.
    static func uniqueKeyPrefix(_ test: String) -> String {
        "test:\(test):\(String(UInt64.random(in: .min ... .max), radix: 16)):"
    }
}

