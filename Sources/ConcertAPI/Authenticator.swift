import ConcertDomain
import Foundation
import JWTKit
import Logging
import Synchronization

/// Verifies the bearer JWTs (with vapor/jwt-kit) and issues the service's own.
///
/// Two kinds of token are accepted, with the same claims (`sub` a positive decimal user id,
/// `exp` required and in the future, optional `role: "admin"`):
/// - `alg: HS256` (exactly), signed with `CONCERT_JWT_SECRET`;
/// - `alg` RS256, ES256 or EdDSA, with a `kid` that names a key of `CONCERT_JWT_JWKS_FILE`
///   whose type fits that `alg` (`JWKSKeySet`).
///
/// The header is read first and decides which keys may verify the token: jwt-kit itself
/// verifies with whatever key it finds (and falls back to a default key for an unknown `kid`),
/// without comparing the header's `alg` with the key's. So `none`, `HS512`, `hs256`, HMAC with
/// a JWKS `kid`, or an asymmetric `alg` without a known `kid` never reach a key that could
/// accept them.
public struct Authenticator: Sendable {
    /// The HS256 secret alone.
    private let hmac: JWTKeyCollection
    private let clock: WallClock
    private let maxLifetimeSeconds: Int64
    private let keySet: KeySetHolder
    /// Tokens already verified, with their claims: a fan polling the queue sends the same token
    /// every second, and re-verifying it was a third of the service's CPU in the polling
    /// benchmark. Only exact strings that passed every check are kept, each with the generation
    /// of the key set it was verified under (a JWKS reload bumps it, so a token of a removed key
    /// is not answered from here); expiry is still checked against the clock on every use.
    private let verified = VerifiedTokens()
    /// A JWT longer than this is refused before any parsing (HS256 tokens here are ~150 bytes,
    /// an RS256 one with a 4096-bit key under 1 KB).
    static let maxTokenBytes = 4096
    /// HS256 wants a key at least as long as its hash (RFC 7518 §3.2); jwt-kit asserts it.
    public static let minimumSecretBytes = 32

    /// - Parameter jwksFile: a JSON Web Key Set file of public keys, read now (a bad file throws
    ///   `ConfigError`) and again by `reloadKeySet`.
    public init(secret: String, clock: WallClock = .system, maxLifetimeSeconds: Int64 = 0,
                jwksFile: String? = nil) async throws {
        guard secret.utf8.count >= Self.minimumSecretBytes else {
            throw ConfigError("CONCERT_JWT_SECRET must be at least \(Self.minimumSecretBytes) bytes, got \(secret.utf8.count)")
        }
        let hmac = JWTKeyCollection()
        await hmac.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        self.hmac = hmac
        self.clock = clock
        self.maxLifetimeSeconds = maxLifetimeSeconds
        var keys: JWKSKeySet?
        if let jwksFile { keys = try await JWKSKeySet.load(path: jwksFile) }
        self.keySet = KeySetHolder(path: jwksFile, keys: keys)
    }

    /// The claims of every accepted token. Expiry, lifetime and `sub` are checked after the
    /// signature, against the injected clock (jwt-kit's own claim types use the system time).
    struct Claims: JWTPayload {
        var sub: String
        var exp: Double
        var role: String?

        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    private static let parser = DefaultJWTParser()

    /// The token without surrounding spaces and tabs. By hand, not Foundation's
    /// `trimmingCharacters(in: .whitespaces)`: that was 4 % of the service's CPU when polling the
    /// queue. (Other Unicode blanks cannot be part of a JWT, whose characters are base64url and
    /// dots, so a token keeping one fails verification either way.)
    static func trimmingBlanks(_ text: Substring) -> String {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = text.firstIndex(where: { !blank($0) }), let last = text.lastIndex(where: { !blank($0) }) else { return "" }
        return String(text[first...last])
    }

    func identity(authorization: String?) async throws(APIError) -> Identity {
        guard let authorization else { throw .unauthenticated("missing bearer token") }
        let parts = authorization.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { throw .unauthenticated("expected 'Bearer <token>'") }
        let token = Self.trimmingBlanks(parts[1])
        guard !token.isEmpty, token.utf8.count <= Self.maxTokenBytes else { throw .unauthenticated("malformed token") }
        let now = Double(clock.now().milliseconds) / 1000
        let (generation, jwks) = keySet.current
        if let known = verified.lookup(token, generation: generation) {
            guard known.expiresAt > now else { throw .unauthenticated("token expired") }
            return known.identity
        }
        let bytes = Array(token.utf8)
        guard let header = try? Self.parser.parse(bytes, as: Claims.self).header else {
            throw .unauthenticated("malformed token")
        }
        let keys: JWTKeyCollection
        switch header.alg {
        case "HS256"?:
            keys = hmac
        case let alg? where JWKSKeySet.algorithms.contains(alg):
            guard let kid = header.kid, let jwks, let keyAlg = jwks.algorithm(kid: kid) else {
                throw .unauthenticated("unknown key")
            }
            guard keyAlg == alg else { throw .unauthenticated("alg does not match the key") }
            keys = jwks.keys
        default:
            throw .unauthenticated("only HS256, or RS256/ES256/EdDSA with a known kid, are accepted")
        }
        let claims: Claims
        do {
            claims = try await keys.verify(bytes, as: Claims.self)
        } catch {
            throw .unauthenticated("bad signature or claims")
        }
        guard claims.exp > now else { throw .unauthenticated("token expired") }
        if maxLifetimeSeconds > 0, claims.exp - now > Double(maxLifetimeSeconds) {
            throw .unauthenticated("token lifetime is longer than allowed")
        }
        guard let userId = Int64(claims.sub), userId > 0, String(userId) == claims.sub else {
            throw .unauthenticated("sub must be a positive decimal user id")
        }
        let identity = Identity(userId: userId, isAdmin: claims.role == "admin")
        verified.remember(token, identity: identity, expiresAt: claims.exp, generation: generation)
        return identity
    }

    /// Reads `CONCERT_JWT_JWKS_FILE` again (on SIGHUP). On success the new keys replace the old
    /// ones at once and remembered tokens are forgotten; on failure the old keys stay.
    @discardableResult
    public func reloadKeySet(logger: Logger) async -> Bool {
        guard let path = keySet.path else { return false }
        do {
            let keys = try await JWKSKeySet.load(path: path)
            keySet.replace(with: keys)
            verified.removeAll()
            logger.info("reloaded the JWKS file", metadata: ["path": "\(path)", "keys": "\(keys.count)"])
            return true
        } catch {
            logger.error("could not reload the JWKS file; keeping the previous keys",
                         metadata: ["path": "\(path)", "error": "\(error)"])
            return false
        }
    }

    /// A signed HS256 token for `userId`, valid for `ttlSeconds`.
    public func issue(userId: Int64, admin: Bool, ttlSeconds: Int64) async throws -> String {
        let exp = clock.now().milliseconds / 1000 + ttlSeconds
        return try await hmac.sign(Claims(sub: String(userId), exp: Double(exp), role: admin ? "admin" : nil))
    }
}

/// The key set in force and its generation, swapped whole on a reload.
final class KeySetHolder: Sendable {
    let path: String?
    private let state: Mutex<(generation: Int, keys: JWKSKeySet?)>

    init(path: String?, keys: JWKSKeySet?) {
        self.path = path
        self.state = Mutex((0, keys))
    }

    var current: (generation: Int, keys: JWKSKeySet?) { state.withLock { $0 } }

    func replace(with keys: JWKSKeySet) {
        state.withLock { $0 = ($0.generation + 1, keys) }
    }
}

/// A bounded memo of verified tokens (dropped whole when full: tokens are cheap to re-verify).
final class VerifiedTokens: Sendable {
    struct Entry {
        var identity: Identity
        var expiresAt: Double
        var generation: Int
    }
    private let entries = Mutex<[String: Entry]>([:])
    static let capacity = 50_000

    /// The entry for `token` if it was verified under key-set `generation`.
    func lookup(_ token: String, generation: Int) -> Entry? {
        entries.withLock { entries in
            guard let entry = entries[token], entry.generation == generation else { return nil }
            return entry
        }
    }

    func remember(_ token: String, identity: Identity, expiresAt: Double, generation: Int) {
        entries.withLock { entries in
            if entries.count >= Self.capacity { entries.removeAll(keepingCapacity: true) }
            entries[token] = Entry(identity: identity, expiresAt: expiresAt, generation: generation)
        }
    }

    func removeAll() {
        entries.withLock { $0.removeAll(keepingCapacity: true) }
    }
}
