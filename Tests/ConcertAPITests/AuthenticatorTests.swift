@testable import ConcertAPI
import ConcertDomain
import Crypto
import Foundation
import Logging
import Testing

@Suite("Authenticator")
struct AuthenticatorTests {
    /// Made once: a 2048-bit RSA key takes a while in a debug build.
    static let keys = try! JWKSTestKeys()

    static func temporaryPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("concertd-\(UUID().uuidString.prefix(8))-\(name)").path
    }

    /// A key set with one key of each algorithm (kids `rsa`, `ec`, `ed`), and an authenticator on it.
    static func authenticatorWithKeySet(clock: WallClock = .system) async throws -> (Authenticator, path: String) {
        let path = temporaryPath("jwks.json")
        try JWKSTestKeys.writeKeySet([keys.jwk(.rs256, kid: "rsa"), keys.jwk(.es256, kid: "ec", withAlg: true),
                                      keys.jwk(.eddsa, kid: "ed")], to: path)
        return (try await Authenticator(secret: testSecret, clock: clock, jwksFile: path), path)
    }

    static func claims(user: Int = 7, admin: Bool = false, ttl: Int = 600) -> String {
        let exp = Int(Date().timeIntervalSince1970) + ttl
        return #"{"sub":"\#(user)","exp":\#(exp)\#(admin ? #","role":"admin""# : "")}"#
    }

    static func accepts(_ authenticator: Authenticator, _ token: String) async -> Identity? {
        try? await authenticator.identity(authorization: "Bearer \(token)")
    }

    @Test func aRememberedTokenStillRunsOutAndATamperedOneIsStillRefused() async throws {
        let clock = ManualClock()
        let authenticator = try await Authenticator(secret: testSecret, clock: clock.clock)
        let token = try await authenticator.issue(userId: 9, admin: false, ttlSeconds: 60)
        #expect(try await authenticator.identity(authorization: "Bearer \(token)").userId == 9)
        #expect(try await authenticator.identity(authorization: "Bearer \(token)").userId == 9, "answered from the memo")
        // The signature's first character, not its last: the last one of an HS256 signature
        // also carries two padding bits, and `A` for `B` there changed only those (1 run in 16).
        let signatureStart = token.index(after: try #require(token.lastIndex(of: ".")))
        let tampered = token.replacingCharacters(in: signatureStart...signatureStart,
                                                 with: token[signatureStart] == "A" ? "Q" : "A")
        await #expect(throws: APIError.self) { try await authenticator.identity(authorization: "Bearer \(tampered)") }
        clock.advance(seconds: 61)
        await #expect(throws: APIError.self) { try await authenticator.identity(authorization: "Bearer \(token)") }
    }

    @Test func issuedTokensCarryTheRoleAndAreVerifiedByTheSameSecretOnly() async throws {
        let authenticator = try await Authenticator(secret: testSecret)
        let admin = try await authenticator.issue(userId: 3, admin: true, ttlSeconds: 60)
        #expect(await Self.accepts(authenticator, admin) == Identity(userId: 3, isAdmin: true))
        let other = try await Authenticator(secret: testSecret + "-other")
        #expect(await Self.accepts(other, admin) == nil)
    }

    @Test func aSecretShorterThan32BytesIsRefused() async throws {
        let short = String(repeating: "s", count: 31)
        await #expect(throws: ConfigError.self) { _ = try await Authenticator(secret: short) }
        #expect(throws: ConfigError.self) { _ = try AppConfig.fromEnvironment(["CONCERT_JWT_SECRET": short]) }
        _ = try await Authenticator(secret: short + "s")
        #expect(try AppConfig.fromEnvironment(["CONCERT_JWT_SECRET": short + "s"]).jwtSecret == short + "s")
        #expect(AppConfig.devJWTSecret.utf8.count >= 32)
    }

    @Test(arguments: JWKSTestKeys.Algorithm.allCases)
    func aTokenOfEachJWKSAlgorithmIsAcceptedWithItsClaims(_ algorithm: JWKSTestKeys.Algorithm) async throws {
        let (authenticator, _) = try await Self.authenticatorWithKeySet()
        let kid = ["RS256": "rsa", "ES256": "ec", "EdDSA": "ed"][algorithm.rawValue]!
        let token = try Self.keys.token(algorithm, kid: kid, payload: Self.claims(user: 12, admin: true))
        #expect(await Self.accepts(authenticator, token) == Identity(userId: 12, isAdmin: true))
        let fan = try Self.keys.token(algorithm, kid: kid, payload: Self.claims(user: 13))
        #expect(await Self.accepts(authenticator, fan) == Identity(userId: 13, isAdmin: false))
        // The same checks on the claims as for HS256.
        let expired = try Self.keys.token(algorithm, kid: kid, payload: Self.claims(ttl: -5))
        #expect(await Self.accepts(authenticator, expired) == nil)
        let badSubject = try Self.keys.token(algorithm, kid: kid, payload: #"{"sub":"007","exp":\#(Int(Date().timeIntervalSince1970) + 60)}"#)
        #expect(await Self.accepts(authenticator, badSubject) == nil)
        // The HS256 secret still works beside the key set.
        #expect(await Self.accepts(authenticator, try await authenticator.issue(userId: 4, admin: false, ttlSeconds: 60))?.userId == 4)
    }

    @Test func anAlgThatDoesNotMatchTheKeyIsRefused() async throws {
        let (authenticator, _) = try await Self.authenticatorWithKeySet()
        let payload = Self.claims()
        // Signed by the key the kid names, but the header claims another algorithm of the same family.
        #expect(await Self.accepts(authenticator, try Self.keys.token(.rs256, kid: "rsa", alg: "RS512", payload: payload)) == nil)
        #expect(await Self.accepts(authenticator, try Self.keys.token(.rs256, kid: "rsa", alg: "PS256", payload: payload)) == nil)
        #expect(await Self.accepts(authenticator, try Self.keys.token(.es256, kid: "ec", alg: "ES384", payload: payload)) == nil)
        // The kid names a key of another type than the signature's algorithm.
        #expect(await Self.accepts(authenticator, try Self.keys.token(.es256, kid: "rsa", payload: payload)) == nil)
        #expect(await Self.accepts(authenticator, try Self.keys.token(.rs256, kid: "ed", payload: payload)) == nil)
        #expect(await Self.accepts(authenticator, try Self.keys.token(.eddsa, kid: "ec", payload: payload)) == nil)
        // The right kid and alg, signed by a key that is not in the set.
        let stranger = try JWKSTestKeys()
        #expect(await Self.accepts(authenticator, try stranger.token(.es256, kid: "ec", payload: payload)) == nil)
        // Sanity: the same payload is accepted when everything matches.
        #expect(await Self.accepts(authenticator, try Self.keys.token(.es256, kid: "ec", payload: payload)) != nil)
    }

    @Test func anUnknownOrMissingKidIsRefused() async throws {
        let (authenticator, _) = try await Self.authenticatorWithKeySet()
        let payload = Self.claims()
        for algorithm in JWKSTestKeys.Algorithm.allCases {
            #expect(await Self.accepts(authenticator, try Self.keys.token(algorithm, kid: "nope", payload: payload)) == nil, "\(algorithm)")
            #expect(await Self.accepts(authenticator, try Self.keys.token(algorithm, kid: nil, payload: payload)) == nil, "\(algorithm)")
        }
        // Without a key set, no asymmetric token is accepted at all.
        let plain = try await Authenticator(secret: testSecret)
        #expect(await Self.accepts(plain, try Self.keys.token(.rs256, kid: "rsa", payload: payload)) == nil)
    }

    @Test func algNoneIsRefusedWithAJWKSKid() async throws {
        let (authenticator, _) = try await Self.authenticatorWithKeySet()
        for kid in ["rsa", "ec", "ed"] {
            for alg in ["none", "None", "NONE"] {
                let unsigned = JWTTestSigner.sign(header: #"{"alg":"\#(alg)","kid":"\#(kid)"}"#, payload: Self.claims()) { _ in Data() }
                #expect(await Self.accepts(authenticator, unsigned) == nil, "\(alg) \(kid)")
            }
        }
    }

    /// The classic key-confusion attack: HMAC keyed with the (public) key's bytes, under the kid.
    @Test func hmacKeyedWithThePublicKeyIsRefused() async throws {
        let (authenticator, _) = try await Self.authenticatorWithKeySet()
        let rsa = Self.keys.rsa.publicKey
        let candidates: [(String, Data)] = [
            ("rsa", Data(rsa.pemRepresentation.utf8)), ("rsa", rsa.derRepresentation),
            ("rsa", Data(try Self.keys.jwk(.rs256, kid: "rsa").utf8)), ("rsa", try rsa.getKeyPrimitives().modulus),
            ("ec", Data(Self.keys.p256.publicKey.pemRepresentation.utf8)), ("ec", Self.keys.p256.publicKey.rawRepresentation),
            ("ed", Self.keys.ed25519.publicKey.rawRepresentation), ("ed", Data(try Self.keys.jwk(.eddsa, kid: "ed").utf8)),
        ]
        for (kid, keyBytes) in candidates {
            for alg in ["HS256", "HS384", "HS512"] {
                let token = JWTTestSigner.sign(header: #"{"alg":"\#(alg)","typ":"JWT","kid":"\#(kid)"}"#, payload: Self.claims()) { input in
                    switch alg {
                    case "HS256": Data(HMAC<SHA256>.authenticationCode(for: input, using: SymmetricKey(data: keyBytes)))
                    case "HS384": Data(HMAC<SHA384>.authenticationCode(for: input, using: SymmetricKey(data: keyBytes)))
                    default: Data(HMAC<SHA512>.authenticationCode(for: input, using: SymmetricKey(data: keyBytes)))
                    }
                }
                #expect(await Self.accepts(authenticator, token) == nil, "\(alg) with \(kid)'s public key")
            }
        }
    }

    /// A reload swaps the keys at once: a token of a removed key is refused even though it was
    /// verified (and remembered) a moment before, and a failed reload keeps the keys in force.
    @Test func reloadingTheKeySetForgetsTokensOfRemovedKeysAndAFailedReloadKeepsTheOldKeys() async throws {
        let (authenticator, path) = try await Self.authenticatorWithKeySet()
        let logger = Logger(label: "test")
        let old = try Self.keys.token(.eddsa, kid: "ed", payload: Self.claims(user: 21))
        #expect(await Self.accepts(authenticator, old)?.userId == 21)
        #expect(await Self.accepts(authenticator, old)?.userId == 21, "answered from the memo")
        let hs256 = try await authenticator.issue(userId: 22, admin: false, ttlSeconds: 60)
        #expect(await Self.accepts(authenticator, hs256)?.userId == 22)

        let next = try JWKSTestKeys()
        try JWKSTestKeys.writeKeySet([next.jwk(.eddsa, kid: "ed-2")], to: path)
        #expect(await authenticator.reloadKeySet(logger: logger))
        #expect(await Self.accepts(authenticator, old) == nil, "the removed key's token")
        let new = try next.token(.eddsa, kid: "ed-2", payload: Self.claims(user: 23))
        #expect(await Self.accepts(authenticator, new)?.userId == 23)
        #expect(await Self.accepts(authenticator, hs256)?.userId == 22, "the secret is not part of the key set")

        try Data("{not json".utf8).write(to: URL(fileURLWithPath: path))
        #expect(await authenticator.reloadKeySet(logger: logger) == false)
        #expect(await Self.accepts(authenticator, new)?.userId == 23, "the old keys stay after a failed reload")
        try FileManager.default.removeItem(atPath: path)
        #expect(await authenticator.reloadKeySet(logger: logger) == false)
        #expect(await Self.accepts(authenticator, new)?.userId == 23)
    }

    @Test func anUnusableKeySetFileIsRefusedWithOneLine() async throws {
        let rsa = try Self.keys.jwk(.rs256, kid: "rsa")
        let files: [(String, String)] = [
            ("garbage", "{not json"),
            ("no keys member", #"{"kid":"x"}"#),
            ("no kid", #"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"\#(JWTTestSigner.base64URL(Data(count: 32)))"}]}"#),
            ("duplicate kid", #"{"keys":[\#(rsa),\#(rsa)]}"#),
            ("HMAC key", #"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#),
            ("alg mismatch", #"{"keys":[\#(rsa.dropLast()),"alg":"PS256"}]}"#),
            ("another curve", #"{"keys":[{"kty":"EC","kid":"p","crv":"P-384","x":"AA","y":"AA"}]}"#),
            ("private key", #"{"keys":[{"kty":"OKP","kid":"d","crv":"Ed25519","x":"AA","d":"AA"}]}"#),
            ("encryption key", #"{"keys":[\#(rsa.replacingOccurrences(of: #""use":"sig""#, with: #""use":"enc""#))]}"#),
            ("broken RSA modulus", #"{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}"#),
        ]
        for (name, text) in files {
            let path = Self.temporaryPath("bad.json")
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            do {
                _ = try await Authenticator(secret: testSecret, jwksFile: path)
                Issue.record("\(name): accepted")
            } catch let error as ConfigError {
                #expect(error.description.hasPrefix("CONCERT_JWT_JWKS_FILE"), "\(name): \(error)")
                #expect(!error.description.contains("\n"), "\(name): \(error)")
            }
        }
        await #expect(throws: ConfigError.self) {
            _ = try await Authenticator(secret: testSecret, jwksFile: Self.temporaryPath("missing.json"))
        }
    }
}
