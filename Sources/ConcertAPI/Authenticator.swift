import ConcertDomain
import Crypto
import Foundation

/// Verifies and issues the service's HS256 JWTs.
///
/// Written by hand on swift-crypto's HMAC rather than with jwt-kit: jwt-kit 5 asserts (and
/// announces it will require) an HMAC key of at least 32 bytes, so a shorter
/// `CONCERT_JWT_SECRET`, which the contract allows, would crash debug builds at start-up. HS256
/// with one fixed key is small enough to check completely here: the header must say `HS256`,
/// the signature must match (compared in constant time), `exp` must be present and in the
/// future, and `sub` must be a positive decimal user id.
public struct Authenticator: Sendable {
    private let key: SymmetricKey
    private let clock: WallClock
    private let maxLifetimeSeconds: Int64
    /// A JWT longer than this is refused before any parsing (tokens here are ~150 bytes).
    static let maxTokenBytes = 4096

    public init(secret: String, clock: WallClock = .system, maxLifetimeSeconds: Int64 = 0) {
        self.key = SymmetricKey(data: Data(secret.utf8))
        self.clock = clock
        self.maxLifetimeSeconds = maxLifetimeSeconds
    }

    private struct Header: Decodable {
        var alg: String
    }

    private struct Claims: Decodable {
        var sub: String
        var exp: Double
        var role: String?
    }

    func identity(authorization: String?) throws(APIError) -> Identity {
        guard let authorization else { throw .unauthenticated("missing bearer token") }
        let parts = authorization.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { throw .unauthenticated("expected 'Bearer <token>'") }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        guard !token.isEmpty, token.utf8.count <= Self.maxTokenBytes else { throw .unauthenticated("malformed token") }
        let segments = token.split(separator: ".", omittingEmptySubsequences: false)
        guard segments.count == 3,
              let headerData = Self.base64URLDecode(segments[0]),
              let payloadData = Self.base64URLDecode(segments[1]),
              let signature = Self.base64URLDecode(segments[2]),
              let header = try? JSONDecoder().decode(Header.self, from: headerData)
        else { throw .unauthenticated("malformed token") }
        guard header.alg == "HS256" else { throw .unauthenticated("only HS256 tokens are accepted") }
        let signed = Data(token.utf8.prefix(segments[0].utf8.count + 1 + segments[1].utf8.count))
        guard HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: signed, using: key) else {
            throw .unauthenticated("bad signature")
        }
        guard let claims = try? JSONDecoder().decode(Claims.self, from: payloadData) else {
            throw .unauthenticated("the token needs string 'sub' and numeric 'exp' claims")
        }
        let now = Double(clock.now().milliseconds) / 1000
        guard claims.exp > now else { throw .unauthenticated("token expired") }
        if maxLifetimeSeconds > 0, claims.exp - now > Double(maxLifetimeSeconds) {
            throw .unauthenticated("token lifetime is longer than allowed")
        }
        guard let userId = Int64(claims.sub), userId > 0, String(userId) == claims.sub else {
            throw .unauthenticated("sub must be a positive decimal user id")
        }
        return Identity(userId: userId, isAdmin: claims.role == "admin")
    }

    /// A signed token for `userId`, valid for `ttlSeconds`.
    public func issue(userId: Int64, admin: Bool, ttlSeconds: Int64) -> String {
        let exp = clock.now().milliseconds / 1000 + ttlSeconds
        let header = Self.base64URLEncode(Data(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
        let role = admin ? #","role":"admin""# : ""
        let payload = Self.base64URLEncode(Data(#"{"sub":"\#(userId)","exp":\#(exp)\#(role)}"#.utf8))
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(header).\(payload)".utf8), using: key)
        return "\(header).\(payload).\(Self.base64URLEncode(Data(mac)))"
    }

    static func base64URLEncode(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func base64URLDecode(_ text: Substring) -> Data? {
        guard text.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2D || $0 == 0x5F }) else {
            return nil
        }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.utf8.count % 4 != 0 { base64.append("=") }
        return Data(base64Encoded: base64)
    }
}
