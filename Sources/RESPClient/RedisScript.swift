import Crypto

/// A Lua script with its SHA1, for EVALSHA. The hash is computed here (Redis names a script by
/// the SHA1 of its source), so no SCRIPT LOAD round trip is needed; when Redis has not seen the
/// script (it restarted, or SCRIPT FLUSH ran) `RedisConnectionPool.evalSHA` falls back to EVAL,
/// which also caches it again.
public struct RedisScript: Sendable, Hashable {
    public let source: String
    /// Lowercase hex, as Redis prints it.
    public let sha1: String

    public init(_ source: String) {
        self.source = source
        self.sha1 = SHA1.hexDigest(Array(source.utf8))
    }
}

/// SHA-1 as Redis names scripts (swift-crypto's `Insecure.SHA1`; not used for security).
public enum SHA1 {
    public static func hexDigest(_ message: [UInt8]) -> String {
        digest(message).map { byte in
            let digits = String(byte, radix: 16)
            return byte < 16 ? "0" + digits : digits
        }.joined()
    }

    public static func digest(_ message: [UInt8]) -> [UInt8] {
        Array(Insecure.SHA1.hash(data: message))
    }
}
