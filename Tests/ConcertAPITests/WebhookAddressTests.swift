import ConcertDomain
import Testing
import Webhooks

/// The SSRF rule's pieces, and the retry schedule, without any network.
@Suite("Webhook addresses and retries")
struct WebhookAddressTests {
    @Test func addressLiteralsInEveryFormAreRecognised() {
        let loopback = ["127.0.0.1", "2130706433", "0177.0.0.1", "0x7f.0.0.1", "0x7f000001", "127.1", "017700000001", "::1",
                        "[::1]", "::ffff:127.0.0.1", "[::ffff:7f00:1]", "0:0:0:0:0:0:0:1"]
        for text in loopback {
            let address = IPAddress(literal: text)
            #expect(address?.isLoopback == true && address?.isRefusedForWebhooks == true, "\(text)")
        }
        for text in ["example.com", "localhost", "1.2.3.4.5", "", "fe80::1%eth0", "::gg", "12.34.56.78.example"] {
            #expect(IPAddress(literal: text) == nil, "\(text)")
        }
    }

    @Test func privateLinkLocalAndUnspecifiedAreRefusedPublicIsNot() {
        let refused = ["10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.255", "192.168.0.1", "169.254.169.254", "0.0.0.0",
                       "0.1.2.3", "100.64.0.1", "224.0.0.1", "255.255.255.255", "::", "fc00::1", "fdff::1", "fe80::1", "febf::1",
                       "::ffff:10.0.0.1", "::ffff:192.168.1.1", "::ffff:169.254.1.1", "::ffff:0.0.0.0", "64:ff9b::a00:1", "ff02::1"]
        for text in refused { #expect(IPAddress(literal: text)?.isRefusedForWebhooks == true, "\(text)") }
        let allowed = ["93.184.216.34", "8.8.8.8", "172.32.0.1", "172.15.255.255", "192.169.0.1", "100.128.0.1", "2606:4700::1111",
                       "::ffff:93.184.216.34", "11.0.0.1"]
        for text in allowed { #expect(IPAddress(literal: text)?.isRefusedForWebhooks == false, "\(text)") }
    }

    @Test func targetsParseHTTPAndHTTPSOnly() {
        #expect(WebhookTarget(url: "https://hooks.example/in?x=1") == WebhookTarget(url: "https://hooks.example:443/in?x=1"))
        let target = WebhookTarget(url: "http://[::1]:8080/a/b?c=d")
        #expect(target?.host == "::1" && target?.port == 8080 && target?.requestTarget == "/a/b?c=d" && target?.literal?.isLoopback == true)
        #expect(WebhookTarget(url: "http://hooks.example")?.requestTarget == "/")
        for bad in ["ftp://hooks.example/", "hooks.example", "https:///x", "http://hooks example/", "javascript:alert(1)",
                    "http://1.2.3.4.5/", "http://hooks.example:0/", "http://hooks.example:70000/", "http://_bad_.example/"] {
            #expect(WebhookTarget(url: bad) == nil, "\(bad)")
        }
    }

    @Test func theLoopbackOnlyResolverNeverLeavesThisMachine() async throws {
        let resolver = LoopbackOnlyWebhookResolver()
        #expect(try await resolver.resolve(host: "example.com").isEmpty)
        #expect(try await resolver.resolve(host: "localhost").map(\.description) == ["127.0.0.1"])
        #expect(!resolver.permits(IPAddress(literal: "93.184.216.34")!))
        #expect(resolver.permits(IPAddress(literal: "127.0.0.1")!))
        let guardrail = WebhookAddressGuard(resolver: resolver, allowPrivate: true)
        await #expect(throws: WebhookURLProblem.self) { try await guardrail.addressForDelivery(WebhookTarget(url: "http://8.8.8.8/")!) }
        await #expect(throws: WebhookURLProblem.self) { try await guardrail.addressForDelivery(WebhookTarget(url: "http://example.com/")!) }
        #expect(try await guardrail.addressForDelivery(WebhookTarget(url: "http://127.0.0.1:9/")!).isLoopback)
    }

    /// A name server that does not answer must not hang a registration: the lookup counts as no
    /// address after the time limit, and the guard then accepts the name (checked again at delivery).
    @Test func aLookupThatDoesNotAnswerInTimeCountsAsNoAddress() async throws {
        struct Hanging: WebhookResolver {
            func resolve(host: String) async throws -> [IPAddress] {
                try? await Task.sleep(for: .seconds(30))
                return [IPAddress(bytes: [10, 0, 0, 1])!]
            }
        }
        struct Quick: WebhookResolver {
            func resolve(host: String) async throws -> [IPAddress] { [IPAddress(bytes: [10, 0, 0, 1])!] }
        }
        let clock = ContinuousClock()
        let started = clock.now
        #expect(try await TimeLimitedResolver(Hanging(), timeout: .milliseconds(200)).resolve(host: "slow.example") == [])
        #expect(clock.now - started < .seconds(10), "the time limit, not the hanging lookup, decided")
        let guarded = WebhookAddressGuard(resolver: TimeLimitedResolver(Hanging(), timeout: .milliseconds(200)), allowPrivate: false)
        await #expect(throws: Never.self) { _ = try await guarded.checkRegistration(url: "https://slow.example/hook") }
        // An answer in time is used: here a private address, so the registration is refused.
        let quick = WebhookAddressGuard(resolver: TimeLimitedResolver(Quick(), timeout: .seconds(5)), allowPrivate: false)
        await #expect(throws: WebhookURLProblem.self) { _ = try await quick.checkRegistration(url: "https://quick.example/hook") }
    }

    @Test func retriesGrowStayWithinAMinuteForTenMinutesAndStopAfterADay() {
        var age: Int64 = 0
        var attempts = 0
        var delays: [Int64] = []
        while let delay = WebhookRetryPolicy.delayMilliseconds(afterFailedAttempts: attempts + 1, age: age) {
            if age < WebhookRetryPolicy.earlyWindowMilliseconds { #expect(delay <= 60_000) }
            delays.append(delay)
            attempts += 1
            age += delay
        }
        #expect(Array(delays.prefix(7)) == [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000])
        #expect(age >= 24 * 3600 * 1000, "retried for at least a day")
        #expect(delays.max()! <= 600_000)
    }
}
