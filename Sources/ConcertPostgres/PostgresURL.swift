/// The parts of a `postgres://user[:password]@host[:port]/database` URL.
///
/// Parsed by hand rather than with Foundation's URL so that what is accepted is exactly what
/// this file says: a `postgres` or `postgresql` scheme, a user name, an optional password, a
/// host (a name, an IPv4 address or a bracketed IPv6 address), an optional port (5432 when
/// absent), and a database name. User, password and database may be percent-encoded.
/// One query parameter is understood, `sslmode`: `disable` (the default) or `verify-full` (TLS
/// with the server's certificate checked against the system's trust roots and the host name);
/// anything else is refused rather than silently ignored.
public struct PostgresURL: Sendable, Equatable, CustomStringConvertible {
    public enum SSLMode: String, Sendable, Equatable {
        case disable
        case verifyFull = "verify-full"
    }

    public var username: String
    public var password: String?
    public var host: String
    public var port: Int
    public var database: String
    public var sslMode: SSLMode

    public init(username: String, password: String?, host: String, port: Int, database: String, sslMode: SSLMode = .disable) {
        self.username = username
        self.password = password
        self.host = host
        self.port = port
        self.database = database
        self.sslMode = sslMode
    }

    public init(parsing text: String) throws(PostgresURLError) {
        var rest = Substring(text)
        guard let schemeEnd = rest.range(of: "://") else { throw PostgresURLError(text, "it must start with postgres://") }
        let scheme = rest[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "postgres" || scheme == "postgresql" else {
            throw PostgresURLError(text, "the scheme must be postgres:// or postgresql://, not \(scheme)://")
        }
        rest = rest[schemeEnd.upperBound...]

        var sslMode = SSLMode.disable
        if let question = rest.firstIndex(of: "?") {
            for parameter in rest[rest.index(after: question)...].split(separator: "&") {
                guard parameter.hasPrefix("sslmode="), let mode = SSLMode(rawValue: String(parameter.dropFirst("sslmode=".count))) else {
                    throw PostgresURLError(text, "unsupported parameter \(parameter) (only sslmode=disable or sslmode=verify-full)")
                }
                sslMode = mode
            }
            rest = rest[..<question]
        }
        guard let slash = rest.firstIndex(of: "/") else { throw PostgresURLError(text, "it names no database (…/DATABASE)") }
        let authority = rest[..<slash]
        let databaseText = rest[rest.index(after: slash)...]
        guard !databaseText.isEmpty, !databaseText.contains("/") else {
            throw PostgresURLError(text, "the database name must be one non-empty path segment")
        }
        guard let at = authority.lastIndex(of: "@") else { throw PostgresURLError(text, "it names no user (USER@host)") }
        let userInfo = authority[..<at]
        let hostPort = authority[authority.index(after: at)...]

        let userText: Substring, passwordText: Substring?
        if let colon = userInfo.firstIndex(of: ":") {
            userText = userInfo[..<colon]
            passwordText = userInfo[userInfo.index(after: colon)...]
        } else {
            userText = userInfo
            passwordText = nil
        }
        guard let username = Self.percentDecoded(userText), !username.isEmpty else {
            throw PostgresURLError(text, "the user name is empty or badly percent-encoded")
        }
        var password: String?
        if let passwordText {
            guard let decoded = Self.percentDecoded(passwordText) else { throw PostgresURLError(text, "the password is badly percent-encoded") }
            password = decoded
        }

        let hostText: Substring, portText: Substring?
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw PostgresURLError(text, "an IPv6 host lacks its closing ]") }
            hostText = hostPort[hostPort.index(after: hostPort.startIndex)..<close]
            let after = hostPort[hostPort.index(after: close)...]
            if after.isEmpty {
                portText = nil
            } else if after.hasPrefix(":") {
                portText = after.dropFirst()
            } else {
                throw PostgresURLError(text, "unexpected text after the IPv6 host")
            }
        } else if let colon = hostPort.lastIndex(of: ":") {
            hostText = hostPort[..<colon]
            portText = hostPort[hostPort.index(after: colon)...]
        } else {
            hostText = hostPort
            portText = nil
        }
        guard !hostText.isEmpty, !hostText.contains(where: { $0 == " " || $0 == "/" || $0 == "@" }) else {
            throw PostgresURLError(text, "the host is empty or malformed")
        }
        var port = 5432
        if let portText {
            guard let parsed = Int(portText), (1...65535).contains(parsed) else {
                throw PostgresURLError(text, "the port must be a number from 1 to 65535")
            }
            port = parsed
        }
        guard let database = Self.percentDecoded(databaseText), !database.isEmpty else {
            throw PostgresURLError(text, "the database name is badly percent-encoded")
        }
        self.init(username: username, password: password, host: String(hostText), port: port, database: database, sslMode: sslMode)
    }

    /// The URL with the password masked, for logs and error messages.
    public var description: String {
        let host = self.host.contains(":") ? "[\(self.host)]" : self.host
        let query = sslMode == .disable ? "" : "?sslmode=\(sslMode.rawValue)"
        return "postgres://\(username)\(password == nil ? "" : ":***")@\(host):\(port)/\(database)\(query)"
    }

    private static func percentDecoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else { return nil }
                bytes.append(high << 4 | low)
            } else {
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// A database URL that does not parse. The message names the problem but never the password.
public struct PostgresURLError: Error, CustomStringConvertible, Equatable {
    public var reason: String
    public var description: String

    init(_ url: String, _ reason: String) {
        self.reason = reason
        self.description = "invalid PostgreSQL URL \(Self.redacted(url)): \(reason); expected postgres://user[:password]@host:port/database"
    }

    /// The URL with anything between `//` and the last `@` reduced to the user name, so a
    /// password never reaches a log.
    private static func redacted(_ url: String) -> String {
        guard let schemeEnd = url.range(of: "://"), let at = url.lastIndex(of: "@"), at > schemeEnd.upperBound else {
            return "\"\(url)\""
        }
        let userInfo = url[schemeEnd.upperBound..<at]
        let user = userInfo.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let masked = userInfo.contains(":") ? "\(user):***" : String(user)
        return "\"\(url[..<schemeEnd.upperBound])\(masked)\(url[at...])\""
    }
}
