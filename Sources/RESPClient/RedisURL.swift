/// Where Redis is: `redis://[[user]:password@]host[:port][/db]`.
public struct RedisURL: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var database: Int
    public var username: String?
    public var password: String?

    public init(host: String, port: Int = 6379, database: Int = 0, username: String? = nil, password: String? = nil) {
        self.host = host
        self.port = port
        self.database = database
        self.username = username
        self.password = password
    }

    /// Parses a URL, throwing `RESPClientError` of kind `.invalidURL` that says what is wrong.
    public init(parsing text: String) throws(RESPClientError) {
        func invalid(_ why: String) -> RESPClientError {
            RESPClientError(.invalidURL, "\(why) in Redis URL '\(Self.redacted(text))'; expected redis://host:port[/db]")
        }
        guard let schemeEnd = text.firstRange(of: "://") else { throw invalid("no scheme") }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        if scheme == "rediss" { throw invalid("TLS (rediss://) is not supported") }
        guard scheme == "redis" else { throw invalid("scheme '\(scheme)' is not redis") }
        var rest = text[schemeEnd.upperBound...]
        if rest.contains("?") || rest.contains("#") { throw invalid("query or fragment not supported") }

        var username: String?, password: String?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                let user = credentials[..<colon]
                username = user.isEmpty ? nil : try Self.percentDecoded(user, invalid)
                password = try Self.percentDecoded(credentials[credentials.index(after: colon)...], invalid)
            } else if !credentials.isEmpty {
                // `redis://secret@host` is how some tools write a password without a user.
                password = try Self.percentDecoded(credentials, invalid)
            }
        }

        let authority: Substring, path: Substring
        if let slash = rest.firstIndex(of: "/") {
            authority = rest[..<slash]
            path = rest[rest.index(after: slash)...]
        } else {
            authority = rest
            path = ""
        }

        var host: Substring, portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw invalid("unclosed '[' in host") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw invalid("unexpected text after ']'") }
                portText = after.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        guard !host.isEmpty else { throw invalid("no host") }
        if host.contains(":") && !authority.hasPrefix("[") { throw invalid("an IPv6 host must be in brackets") }

        var port = 6379
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value), portText.allSatisfy(\.isASCII) else {
                throw invalid("bad port '\(portText)'")
            }
            port = value
        }

        var database = 0
        let databaseText = path.hasSuffix("/") ? path.dropLast() : path
        if !databaseText.isEmpty {
            guard let value = Int(databaseText), value >= 0, databaseText.first != "+" else {
                throw invalid("bad database number '\(databaseText)'")
            }
            database = value
        }
        self.init(host: String(host), port: port, database: database, username: username, password: password)
    }

    /// The URL without its password, for logs.
    public var description: String {
        let credentials = password == nil ? "" : "\(username ?? ""):***@"
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return "redis://\(credentials)\(hostPart):\(port)/\(database)"
    }

    private static func redacted(_ text: String) -> String {
        guard let schemeEnd = text.firstRange(of: "://"), let at = text.lastIndex(of: "@"), at > schemeEnd.upperBound else { return text }
        return String(text[..<schemeEnd.upperBound]) + "***" + String(text[at...])
    }

    private static func percentDecoded(_ text: Substring, _ invalid: (String) -> RESPClientError) throws(RESPClientError) -> String {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else { bytes.append(byte); continue }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                throw invalid("bad percent escape in credentials")
            }
            bytes.append(high << 4 | low)
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else { throw invalid("credentials are not UTF-8") }
        return decoded
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
