import Foundation

/// Where a webhook URL points: scheme, host, port and request target.
public struct WebhookTarget: Sendable, Equatable {
    public var isHTTPS: Bool
    /// As written in the URL, without brackets for IPv6.
    public var host: String
    public var port: Int
    /// Path and query, at least "/".
    public var requestTarget: String
    /// The address literal the host is, nil for a name.
    public var literal: IPAddress?

    public static let maximumURLLength = 2048

    /// Nil unless `url` is an absolute http or https URL with a host.
    public init?(url: String) {
        guard url.utf8.count <= Self.maximumURLLength, !url.contains(where: { $0.isWhitespace }),
              let components = URLComponents(string: url),
              let scheme = components.scheme?.lowercased(), scheme == "http" || scheme == "https",
              var host = components.host, !host.isEmpty
        else { return nil }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if let port = components.port, !(1...65535).contains(port) { return nil }
        isHTTPS = scheme == "https"
        self.host = host
        port = components.port ?? (isHTTPS ? 443 : 80)
        var target = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
        if let query = components.percentEncodedQuery { target += "?" + query }
        requestTarget = target
        literal = IPAddress(literal: host)
        // A host that is neither an address nor a plausible DNS name (e.g. "1.2.3.4.5" or
        // "0x7f.0x0.0x0.0x1.x") is refused rather than handed to a resolver.
        if literal == nil {
            let allowed = host.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "-" || $0 == ".") }
            guard allowed, host.utf8.count <= 253, !host.contains(":"),
                  !host.split(separator: ".").allSatisfy({ $0.allSatisfy(\.isNumber) }) else { return nil }
        }
    }
}

/// Why a webhook URL cannot be used.
public enum WebhookURLProblem: Error, Equatable, Sendable, CustomStringConvertible {
    case notHTTP
    case refusedAddress(String)
    case unresolvable(String)

    public var description: String {
        switch self {
        case .notHTTP: "'url' must be an absolute http or https URL with a host"
        case .refusedAddress(let address): "'url' points at \(address), a loopback, private, link-local or unspecified address"
        case .unresolvable(let host): "'\(host)' resolves to no address"
        }
    }
}

/// The SSRF rule, applied at registration and again at every delivery.
public struct WebhookAddressGuard: Sendable {
    public var resolver: any WebhookResolver
    /// `CONCERT_WEBHOOK_ALLOW_PRIVATE=1`: loopback and private addresses are allowed.
    public var allowPrivate: Bool

    public init(resolver: any WebhookResolver, allowPrivate: Bool) {
        self.resolver = resolver
        self.allowPrivate = allowPrivate
    }

    private func refused(_ address: IPAddress) -> Bool { !allowPrivate && address.isRefusedForWebhooks }

    /// At registration: refused when the host is, or resolves to, a refused address. A name that
    /// resolves to nothing (now) is accepted; its deliveries are checked when they are made.
    public func checkRegistration(url: String) async throws(WebhookURLProblem) -> WebhookTarget {
        guard let target = WebhookTarget(url: url) else { throw .notHTTP }
        if let literal = target.literal {
            if refused(literal) { throw .refusedAddress(literal.description) }
            return target
        }
        let addresses = (try? await resolver.resolve(host: target.host)) ?? []
        if let bad = addresses.first(where: refused) { throw .refusedAddress(bad.description) }
        return target
    }

    /// At delivery: the one address to connect to, resolved once and checked (there is no second
    /// lookup between check and connect, so no DNS-rebinding window).
    public func addressForDelivery(_ target: WebhookTarget) async throws(WebhookURLProblem) -> IPAddress {
        let addresses: [IPAddress]
        if let literal = target.literal {
            addresses = [literal]
        } else {
            addresses = (try? await resolver.resolve(host: target.host)) ?? []
        }
        guard let first = addresses.first else { throw .unresolvable(target.host) }
        // Any refused address among the answers refuses the name (a rebinding name mixes them).
        if let bad = addresses.first(where: { refused($0) || !resolver.permits($0) }) { throw .refusedAddress(bad.description) }
        return first
    }
}
