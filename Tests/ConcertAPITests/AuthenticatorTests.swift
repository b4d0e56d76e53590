@testable import ConcertAPI
import ConcertDomain
import Foundation
import Testing

@Suite("Authenticator")
struct AuthenticatorTests {
    @Test func base64URLDecodingMatchesFoundation() {
        var generator = SystemRandomNumberGenerator()
        for length in 0..<70 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let encoded = Authenticator.base64URLEncode(Data(bytes))
            #expect(Authenticator.base64URLDecode(Substring(encoded)) == Data(bytes), "length \(length)")
        }
        for bad in ["a", "ab=c", "a+b/", "abc$", "abcdE"] {
            #expect(Authenticator.base64URLDecode(Substring(bad)) == nil, "\(bad)")
        }
    }

    @Test func aRememberedTokenStillRunsOutAndATamperedOneIsStillRefused() throws {
        let clock = ManualClock()
        let authenticator = Authenticator(secret: "s", clock: clock.clock)
        let token = authenticator.issue(userId: 9, admin: false, ttlSeconds: 60)
        #expect(try authenticator.identity(authorization: "Bearer \(token)").userId == 9)
        #expect(try authenticator.identity(authorization: "Bearer \(token)").userId == 9, "answered from the memo")
        let tampered = String(token.dropLast()) + (token.hasSuffix("A") ? "B" : "A")
        #expect(throws: APIError.self) { try authenticator.identity(authorization: "Bearer \(tampered)") }
        clock.advance(seconds: 61)
        #expect(throws: APIError.self) { try authenticator.identity(authorization: "Bearer \(token)") }
    }
}
