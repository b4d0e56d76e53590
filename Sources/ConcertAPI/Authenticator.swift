import ConcertDomain
import Crypto
import Foundation
import Synchronization

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
    /// Tokens already verified, with their claims: a fan polling the queue sends the same token
    /// every second, and re-verifying it was a third of the service's CPU in the polling
    /// benchmark. Only exact strings that passed every check are kept; expiry is still checked
    /// against the clock on every use.
    private let verified = VerifiedTokens()
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
        let now = Double(clock.now().milliseconds) / 1000
        if let known = verified.lookup(token) {
            guard known.expiresAt > now else { throw .unauthenticated("token expired") }
            return known.identity
        }
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
        guard claims.exp > now else { throw .unauthenticated("token expired") }
        if maxLifetimeSeconds > 0, claims.exp - now > Double(maxLifetimeSeconds) {
            throw .unauthenticated("token lifetime is longer than allowed")
        }
        guard let userId = Int64(claims.sub), userId > 0, String(userId) == claims.sub else {
            throw .unauthenticated("sub must be a positive decimal user id")
        }
        let identity = Identity(userId: userId, isAdmin: claims.role == "admin")
        verified.remember(token, identity: identity, expiresAt: claims.exp)
        return identity
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

    /// Base64url without padding, straight from the bytes (Foundation's decoder wants the
    /// standard alphabet and padding, which meant two string rewrites per token).
    static func base64URLDecode(_ text: Substring) -> Data? {
        var output = Data()
        output.reserveCapacity(text.utf8.count * 3 / 4)
        var accumulator: UInt32 = 0
        var bits = 0
        for byte in text.utf8 {
            let value: UInt32
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): value = UInt32(byte - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): value = UInt32(byte - UInt8(ascii: "a")) + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = UInt32(byte - UInt8(ascii: "0")) + 52
            case UInt8(ascii: "-"): value = 62
            case UInt8(ascii: "_"): value = 63
            default: return nil
            }
            accumulator = (accumulator << 6) | value
            bits += 6
            if bits >= 8 {
                bits -= 8
                output.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
            }
        }
        // Leftover bits must be padding zeros, and a lone 6-bit group cannot occur.
        guard bits < 6, accumulator & ((1 << UInt32(bits)) - 1) == 0 else { return nil }
        return output
    }
}

/// A bounded memo of verified tokens (dropped whole when full: tokens are cheap to re-verify).
final class VerifiedTokens: Sendable {
    struct Entry {
        var identity: Identity
        var expiresAt: Double
    }
    private let entries = Mutex<[String: Entry]>([:])
    static let capacity = 50_000

    func lookup(_ token: String) -> Entry? {
        entries.withLock { $0[token] }
    }

    func remember(_ token: String, identity: Identity, expiresAt: Double) {
        entries.withLock { entries in
            if entries.count >= Self.capacity { entries.removeAll(keepingCapacity: true) }
            entries[token] = Entry(identity: identity, expiresAt: expiresAt)
        }
    }
}
