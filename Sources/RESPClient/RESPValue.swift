// A small Redis client written on SwiftNIO for this project: no Swift Redis package can be
// installed here, so the RESP2 protocol, pipelining, pooling, reconnects and timeouts live in
// this module. It speaks only what the service needs; it is not a general-purpose client.

/// One RESP2 reply.
public enum RESPValue: Sendable, Hashable {
    case simpleString(String)
    /// An error reply (`-ERR ...`). `RedisConnectionPool.send` throws these as `RedisServerError`.
    case error(String)
    case integer(Int64)
    case bulkString([UInt8])
    /// The null bulk string (`$-1`) or the null array (`*-1`).
    case null
    case array([RESPValue])

    /// The text of a simple or bulk string; nil for anything else or for bytes that are not UTF-8.
    public var string: String? {
        switch self {
        case .simpleString(let text): return text
        case .bulkString(let bytes): return String(validating: bytes, as: UTF8.self)
        default: return nil
        }
    }

    /// An integer reply, or a string reply holding a decimal integer (Lua numbers and INCR values
    /// come back either way depending on the command).
    public var integer: Int64? {
        switch self {
        case .integer(let value): return value
        case .simpleString, .bulkString: return string.flatMap { Int64($0) }
        default: return nil
        }
    }

    /// The bytes of a bulk or simple string.
    public var bytes: [UInt8]? {
        switch self {
        case .bulkString(let bytes): return bytes
        case .simpleString(let text): return Array(text.utf8)
        default: return nil
        }
    }

    public var array: [RESPValue]? {
        if case .array(let values) = self { return values }
        return nil
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}

/// One argument of a command: always sent as a bulk string, so binary values are safe.
public struct RESPArgument: Sendable, Hashable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    public var bytes: [UInt8]

    public init(bytes: [UInt8]) { self.bytes = bytes }
    public init(_ text: String) { self.bytes = Array(text.utf8) }
    public init(_ value: Int64) { self.bytes = Array(String(value).utf8) }
    public init(_ value: Int) { self.bytes = Array(String(value).utf8) }
    public init(stringLiteral value: String) { self.init(value) }
    public init(integerLiteral value: Int) { self.init(value) }
}

/// A command as Redis receives it: an array of bulk strings, the first one naming the command.
public struct RESPCommand: Sendable, Hashable, CustomStringConvertible {
    public var arguments: [RESPArgument]

    public init(_ name: String, _ arguments: RESPArgument...) {
        self.arguments = [RESPArgument(name)] + arguments
    }

    public init(_ name: String, arguments: [RESPArgument]) {
        self.arguments = [RESPArgument(name)] + arguments
    }

    /// The command name only: arguments may be secrets (AUTH) or large values.
    public var description: String {
        arguments.first.flatMap { String(validating: $0.bytes, as: UTF8.self) } ?? "?"
    }
}
