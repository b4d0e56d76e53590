import NIOCore

/// Reads RESP2 values from a byte buffer that may hold only part of a reply.
///
/// `parse` either consumes one whole value or leaves the buffer untouched, so a caller can feed
/// bytes as they arrive (one at a time, in the worst case) and call it again. Input that cannot be
/// RESP2 throws instead of being guessed at; limits keep a hostile or broken peer from making us
/// allocate without bound.
public struct RESPParser: Sendable {
    public var maxBulkLength: Int
    public var maxArrayLength: Int
    public var maxDepth: Int
    /// The longest simple string, error or number line, CRLF excluded.
    public var maxLineLength: Int

    public init(maxBulkLength: Int = 512 * 1024 * 1024, maxArrayLength: Int = 16 * 1024 * 1024,
                maxDepth: Int = 32, maxLineLength: Int = 64 * 1024) {
        self.maxBulkLength = maxBulkLength
        self.maxArrayLength = maxArrayLength
        self.maxDepth = maxDepth
        self.maxLineLength = maxLineLength
    }

    /// One whole value from the front of `buffer`, or nil when more bytes are needed.
    public func parse(_ buffer: inout ByteBuffer) throws(RESPClientError) -> RESPValue? {
        var index = buffer.readerIndex
        guard let value = try parseValue(buffer, at: &index, depth: 0) else { return nil }
        buffer.moveReaderIndex(to: index)
        return value
    }

    private func parseValue(_ buffer: ByteBuffer, at index: inout Int, depth: Int) throws(RESPClientError) -> RESPValue? {
        guard let type = buffer.getInteger(at: index, as: UInt8.self) else { return nil }
        var cursor = index + 1
        guard let line = try readLine(buffer, at: &cursor) else { return nil }
        let value: RESPValue
        switch type {
        case UInt8(ascii: "+"):
            value = .simpleString(String(decoding: line, as: UTF8.self))
        case UInt8(ascii: "-"):
            value = .error(String(decoding: line, as: UTF8.self))
        case UInt8(ascii: ":"):
            value = .integer(try Self.integer(line))
        case UInt8(ascii: "$"):
            let length = try Self.integer(line)
            if length == -1 {
                value = .null
                break
            }
            guard length >= 0, length <= maxBulkLength else {
                throw RESPClientError(.protocolViolation, "bad bulk string length \(length)")
            }
            let count = Int(length)
            guard buffer.writerIndex - cursor >= count + 2 else { return nil }
            let bytes = buffer.getBytes(at: cursor, length: count)!
            guard buffer.getInteger(at: cursor + count, as: UInt16.self) == Self.crlf else {
                throw RESPClientError(.protocolViolation, "bulk string not followed by CRLF")
            }
            cursor += count + 2
            value = .bulkString(bytes)
        case UInt8(ascii: "*"):
            let length = try Self.integer(line)
            if length == -1 {
                value = .null
                break
            }
            guard length >= 0, length <= maxArrayLength else {
                throw RESPClientError(.protocolViolation, "bad array length \(length)")
            }
            guard depth < maxDepth else { throw RESPClientError(.protocolViolation, "arrays nested too deep") }
            var elements: [RESPValue] = []
            // Reserve by what has arrived at most, not by what the peer claims.
            elements.reserveCapacity(min(Int(length), buffer.writerIndex - cursor))
            for _ in 0..<length {
                guard let element = try parseValue(buffer, at: &cursor, depth: depth + 1) else { return nil }
                elements.append(element)
            }
            value = .array(elements)
        default:
            throw RESPClientError(.protocolViolation, "unexpected type byte \(type)")
        }
        index = cursor
        return value
    }

    private static let crlf = UInt16(UInt8(ascii: "\r")) << 8 | UInt16(UInt8(ascii: "\n"))

    /// The bytes up to the next CRLF, moving `cursor` past it; nil when the CRLF has not arrived.
    private func readLine(_ buffer: ByteBuffer, at cursor: inout Int) throws(RESPClientError) -> [UInt8]? {
        let start = cursor
        var position = start
        while position < buffer.writerIndex {
            if position - start > maxLineLength {
                throw RESPClientError(.protocolViolation, "line longer than \(maxLineLength) bytes")
            }
            if buffer.getInteger(at: position, as: UInt8.self)! == UInt8(ascii: "\r") {
                guard let next = buffer.getInteger(at: position + 1, as: UInt8.self) else { return nil }
                guard next == UInt8(ascii: "\n") else { throw RESPClientError(.protocolViolation, "CR not followed by LF") }
                let line = buffer.getBytes(at: start, length: position - start)!
                cursor = position + 2
                return line
            }
            position += 1
        }
        if position - start > maxLineLength {
            throw RESPClientError(.protocolViolation, "line longer than \(maxLineLength) bytes")
        }
        return nil
    }

    private static func integer(_ line: [UInt8]) throws(RESPClientError) -> Int64 {
        guard let value = Int64(String(decoding: line, as: UTF8.self)), line.first != UInt8(ascii: "+") else {
            throw RESPClientError(.protocolViolation, "not an integer: \(String(decoding: line.prefix(32), as: UTF8.self))")
        }
        return value
    }
}

/// Incremental parsing over plain byte arrays, for callers that have no channel (and for tests).
/// Uses the same `RESPParser` as the channel decoder.
public struct RESPStreamParser: Sendable {
    private var buffer = ByteBufferAllocator().buffer(capacity: 256)
    private let parser: RESPParser

    public init(parser: RESPParser = RESPParser()) { self.parser = parser }

    public mutating func feed(_ bytes: some Sequence<UInt8>) {
        buffer.writeBytes(bytes)
    }

    /// The next whole value, or nil until more bytes are fed.
    public mutating func next() throws(RESPClientError) -> RESPValue? {
        let value = try parser.parse(&buffer)
        buffer.discardReadBytes()
        return value
    }

    /// Bytes fed but not yet part of a whole value.
    public var pendingByteCount: Int { buffer.readableBytes }
}

/// The channel's inbound decoder: bytes in, `RESPValue`s out.
struct RESPDecoder: ByteToMessageDecoder {
    typealias InboundOut = RESPValue
    let parser: RESPParser

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let value = try parser.parse(&buffer) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(value))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A half reply at EOF is dropped: the connection is closing and its waiters fail anyway.
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

extension RESPCommand {
    /// Appends the command as a RESP2 array of bulk strings.
    public func encode(into buffer: inout ByteBuffer) {
        buffer.writeStaticString("*")
        buffer.writeString(String(arguments.count))
        buffer.writeStaticString("\r\n")
        for argument in arguments {
            buffer.writeStaticString("$")
            buffer.writeString(String(argument.bytes.count))
            buffer.writeStaticString("\r\n")
            buffer.writeBytes(argument.bytes)
            buffer.writeStaticString("\r\n")
        }
    }

    var encodedLengthEstimate: Int {
        arguments.reduce(16) { $0 + $1.bytes.count + 16 }
    }
}

extension RESPCommand {
    /// The bytes `encode(into:)` writes, as an array.
    public var encodedBytes: [UInt8] {
        var buffer = ByteBufferAllocator().buffer(capacity: encodedLengthEstimate)
        encode(into: &buffer)
        return buffer.readBytes(length: buffer.readableBytes) ?? []
    }
}
