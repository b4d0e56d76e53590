/// Why a command did not get a reply from Redis. Every way of failing to reach Redis ends here,
/// so a caller can tell "Redis is not there" apart from "Redis said no" (`RedisServerError`).
public struct RESPClientError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// The Redis URL could not be understood.
        case invalidURL
        /// No connection could be opened (refused, unreachable, or the connect timeout passed).
        case connectFailed
        /// A command got no reply within the command timeout; its connection was closed.
        case timeout
        /// The connection closed while the command waited for its reply; the command may or may
        /// not have run.
        case connectionClosed
        /// The command could not be written, so it certainly did not run.
        case notSent
        /// The server sent something that is not RESP2, or a reply nobody asked for.
        case protocolViolation
        /// The pool was closed.
        case poolClosed
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "Redis \(kind): \(message)" }
}

/// An error reply from Redis (`-ERR ...`, `-NOSCRIPT ...`, `-WRONGTYPE ...`): Redis answered.
public struct RedisServerError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) { self.message = message }

    /// The first word of the message, which Redis uses as an error code (`ERR`, `NOSCRIPT`, ...).
    public var code: Substring { message.prefix { $0 != " " } }

    public var description: String { "Redis error: \(message)" }
}
