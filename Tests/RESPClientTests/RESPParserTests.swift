import RESPClient
import Testing

@Suite("RESP2 parsing and encoding")
struct RESPParserTests {
    /// Feeds `bytes` one at a time and collects every value the parser completes.
    private func parseByteByByte(_ bytes: [UInt8]) throws -> [RESPValue] {
        var parser = RESPStreamParser()
        var values: [RESPValue] = []
        for byte in bytes {
            parser.feed([byte])
            while let value = try parser.next() { values.append(value) }
        }
        #expect(parser.pendingByteCount == 0)
        return values
    }

    private func parseAtOnce(_ text: String) throws -> [RESPValue] {
        var parser = RESPStreamParser()
        parser.feed(Array(text.utf8))
        var values: [RESPValue] = []
        while let value = try parser.next() { values.append(value) }
        return values
    }

    @Test func everyReplyTypeParsesWholeAndByteByByte() throws {
        let wire = "+OK\r\n-ERR wrong type\r\n:42\r\n:-7\r\n$5\r\nhello\r\n$0\r\n\r\n$-1\r\n*-1\r\n"
            + "*3\r\n:1\r\n$3\r\nfoo\r\n*2\r\n+nested\r\n$-1\r\n*0\r\n"
        let expected: [RESPValue] = [
            .simpleString("OK"), .error("ERR wrong type"), .integer(42), .integer(-7), .bulkString(Array("hello".utf8)),
            .bulkString([]), .null, .null,
            .array([.integer(1), .bulkString(Array("foo".utf8)), .array([.simpleString("nested"), .null])]),
            .array([]),
        ]
        #expect(try parseAtOnce(wire) == expected)
        #expect(try parseByteByByte(Array(wire.utf8)) == expected)
    }

    @Test func bulkStringsAreBinarySafe() throws {
        let payload = (0...255).map { UInt8($0) } + Array("\r\n$3\r\n".utf8)
        let wire = Array("$\(payload.count)\r\n".utf8) + payload + Array("\r\n".utf8)
        #expect(try parseByteByByte(wire) == [.bulkString(payload)])
    }

    @Test func incompleteInputWaitsAndConsumesNothing() throws {
        var parser = RESPStreamParser()
        parser.feed(Array("*2\r\n$3\r\nfoo\r\n:1".utf8))
        #expect(try parser.next() == nil)
        #expect(parser.pendingByteCount == 15)
        parser.feed(Array("\r\n".utf8))
        #expect(try parser.next() == .array([.bulkString(Array("foo".utf8)), .integer(1)]))
        #expect(parser.pendingByteCount == 0)
    }

    @Test(arguments: [
        "?what\r\n",                       // unknown type byte
        ":12a\r\n",                        // not an integer
        ":\r\n",                           // empty integer
        "$-2\r\n",                         // negative length other than -1
        "$3\r\nabcde\r\n",                 // bulk longer than declared
        "*-5\r\n",                         // bad array length
        "+OK\rX",                          // CR without LF
        "*1\r\n!oops\r\n",                 // garbage inside an array
        "HTTP/1.1 200 OK\r\n",             // a different protocol altogether
    ])
    func garbageIsAnErrorNotACrash(_ wire: String) {
        #expect(throws: RESPClientError.self) { _ = try parseAtOnce(wire) }
        #expect(throws: RESPClientError.self) { _ = try parseByteByByte(Array(wire.utf8)) }
    }

    @Test func absurdSizesAreRefusedBeforeAllocating() {
        var parser = RESPStreamParser(parser: RESPParser(maxBulkLength: 1024, maxArrayLength: 8, maxDepth: 3, maxLineLength: 16))
        parser.feed(Array("$999999999\r\n".utf8))
        #expect(throws: RESPClientError.self) { _ = try parser.next() }

        var arrays = RESPStreamParser(parser: RESPParser(maxArrayLength: 8))
        arrays.feed(Array("*9\r\n".utf8))
        #expect(throws: RESPClientError.self) { _ = try arrays.next() }

        var deep = RESPStreamParser(parser: RESPParser(maxDepth: 3))
        deep.feed(Array("*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n".utf8))
        #expect(throws: RESPClientError.self) { _ = try deep.next() }

        var longLine = RESPStreamParser(parser: RESPParser(maxLineLength: 16))
        longLine.feed(Array(("+" + String(repeating: "x", count: 40)).utf8))
        #expect(throws: RESPClientError.self) { _ = try longLine.next() }
    }

    @Test func commandsEncodeAsArraysOfBulkStrings() throws {
        // Encoding goes through the parser: what we send must read back as what we meant.
        var parser = RESPStreamParser()
        let command = RESPCommand("SET", "key", RESPArgument(bytes: [0, 13, 10, 255]), 42)
        var bytes: [UInt8] = []
        bytes.append(contentsOf: Array("*4\r\n$3\r\nSET\r\n$3\r\nkey\r\n$4\r\n".utf8))
        bytes.append(contentsOf: [0, 13, 10, 255])
        bytes.append(contentsOf: Array("\r\n$2\r\n42\r\n".utf8))
        #expect(command.encodedBytes == bytes)
        parser.feed(command.encodedBytes)
        #expect(try parser.next() == .array([
            .bulkString(Array("SET".utf8)), .bulkString(Array("key".utf8)), .bulkString([0, 13, 10, 255]), .bulkString(Array("42".utf8)),
        ]))
    }

    @Test func replyAccessors() {
        #expect(RESPValue.bulkString(Array("12".utf8)).integer == 12)
        #expect(RESPValue.integer(5).integer == 5)
        #expect(RESPValue.simpleString("PONG").string == "PONG")
        #expect(RESPValue.bulkString([0xFF]).string == nil)
        #expect(RESPValue.null.isNull)
        #expect(RESPValue.array([.integer(1)]).array == [.integer(1)])
    }
}

@Suite("SHA1 for script names")
struct SHA1Tests {
    @Test(arguments: [
        ("", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        ("abc", "a9993e364706816aba3e25717850c26c9cd0d89d"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "84983e441c3bd26ebaae4aa1f95129e5e54670f1"),
        ("return 1", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"),
    ])
    func knownDigests(_ input: String, _ digest: String) {
        #expect(SHA1.hexDigest(Array(input.utf8)) == digest)
        #expect(RedisScript(input).sha1 == digest)
    }

    @Test func millionAs() {
        #expect(SHA1.hexDigest([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)) == "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
    }
}
