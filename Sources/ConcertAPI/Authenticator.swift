import ConcertDomain
import Foundation
import JWTKit

/// The JWT claims the service reads: `sub` (the user id, decimal), `exp` (required), `role`.
struct AccessClaims: JWTPayload {
    var sub: SubjectClaim
    var exp: ExpirationClaim
    var role: String?

    func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
    }
}

/// Verifies HS256 bearer tokens and issues them (`concertd token`, tests).
public struct Authenticator: Sendable {
    private let keys: JWTKeyCollection
    private let clock: WallClock
    private let maxLifetimeSeconds: Int64
    /// A JWT longer than this is refused before any parsing (tokens here are ~200 bytes).
    static let maxTokenBytes = 4096

    public init(secret: String, clock: WallClock = .system, maxLifetimeSeconds: Int64 = 0) async {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        self.keys = keys
        self.clock = clock
        self.maxLifetimeSeconds = maxLifetimeSeconds
    }

    func identity(authorization: String?) async throws(APIError) -> Identity {
        guard let authorization else { throw .unauthenticated("missing bearer token") }
        let parts = authorization.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { throw .unauthenticated("expected 'Bearer <token>'") }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        guard !token.isEmpty, token.utf8.count <= Self.maxTokenBytes else { throw .unauthenticated("malformed token") }
        let claims: AccessClaims
        do {
            claims = try await keys.verify(token, as: AccessClaims.self)
        } catch {
            throw .unauthenticated("invalid, expired or badly signed token")
        }
        if maxLifetimeSeconds > 0 {
            let remaining = claims.exp.value.timeIntervalSince1970 - Double(clock.now().milliseconds) / 1000
            if remaining > Double(maxLifetimeSeconds) { throw .unauthenticated("token lifetime is longer than allowed") }
        }
        let subject = claims.sub.value
        guard let userId = Int64(subject), userId > 0, String(userId) == subject else {
            throw .unauthenticated("sub must be a positive decimal user id")
        }
        return Identity(userId: userId, isAdmin: claims.role == "admin")
    }

    /// A signed token for `userId`, valid for `ttlSeconds`.
    public func issue(userId: Int64, admin: Bool, ttlSeconds: Int64) async throws -> String {
        let expires = Date(timeIntervalSince1970: Double(clock.now().milliseconds / 1000 + ttlSeconds))
        let claims = AccessClaims(sub: SubjectClaim(value: String(userId)), exp: ExpirationClaim(value: expires),
                                  role: admin ? "admin" : nil)
        return try await keys.sign(claims)
    }
}
