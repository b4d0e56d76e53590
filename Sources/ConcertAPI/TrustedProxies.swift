#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The load balancers whose `X-Forwarded-For` is believed (`CONCERT_TRUSTED_PROXIES`), and how
/// the client's address is found behind them, for the per-address rate limit.
///
/// Behind nginx every connection comes from nginx, so the socket peer alone would put every fan
/// in one bucket. nginx appends the address it saw to `X-Forwarded-For`; anything to its left
/// was written by the client and may be forged. So the header is read from the right, skipping
/// our own proxies, and the first address that is not one of them is the client. A request from
/// a peer that is not a trusted proxy is keyed on that peer, whatever its headers say.
///
/// Parsing by hand: a few lines over `inet_pton`; no library on the mirror does CIDR matching.
public struct TrustedProxies: Sendable, Equatable {
    /// An address block: the network's bytes (4 or 16) and the prefix length.
    struct Block: Sendable, Equatable {
        var network: [UInt8]
        var prefixLength: Int

        func contains(_ address: [UInt8]) -> Bool {
            guard address.count == network.count else { return false }
            var remaining = prefixLength
            for (a, n) in zip(address, network) where remaining > 0 {
                let bits = min(8, remaining)
                let mask: UInt8 = bits == 8 ? 0xFF : ~(0xFF >> UInt8(bits))
                if a & mask != n & mask { return false }
                remaining -= bits
            }
            return true
        }
    }

    private(set) var blocks: [Block] = []

    public init() {}

    /// `spec`: addresses or CIDR blocks separated by commas, e.g. `127.0.0.1,10.0.0.0/8,::1`.
    public init(parsing spec: String) throws(ConfigError) {
        for item in spec.split(separator: ",") {
            let text = item.trimmingSpaces()
            guard !text.isEmpty else { continue }
            let parts = text.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count <= 2, let network = Self.bytes(of: String(parts[0])) else {
                throw ConfigError("CONCERT_TRUSTED_PROXIES: \"\(text)\" is not an IP address or CIDR block")
            }
            let maximum = network.count * 8
            var prefixLength = maximum
            if parts.count == 2 {
                guard let length = Int(parts[1]), (0...maximum).contains(length) else {
                    throw ConfigError("CONCERT_TRUSTED_PROXIES: \"\(text)\" has a bad prefix length")
                }
                prefixLength = length
            }
            blocks.append(Block(network: network, prefixLength: prefixLength))
        }
    }

    public var isEmpty: Bool { blocks.isEmpty }

    func trusts(_ address: String) -> Bool {
        guard let bytes = Self.bytes(of: address) else { return false }
        return blocks.contains { $0.contains(bytes) }
    }

    /// The address the per-address limit should count: the peer itself unless it is a trusted
    /// proxy; then the right-most `X-Forwarded-For` entry that is not a trusted proxy.
    public func clientAddress(peer: String?, forwardedFor: [String]) -> String? {
        guard let peer, !blocks.isEmpty, trusts(peer) else { return peer }
        let entries = forwardedFor.flatMap { $0.split(separator: ",") }.map { Self.stripPort($0.trimmingSpaces()) }
        var client = peer
        for entry in entries.reversed() {
            guard !entry.isEmpty else { continue }
            // Anything that is not an address cannot have come from our proxy: stop at it.
            guard Self.bytes(of: entry) != nil else { break }
            client = entry
            if !trusts(entry) { break }
        }
        return client
    }

    /// `1.2.3.4:80` → `1.2.3.4`, `[::1]:80` → `::1`; anything else unchanged.
    static func stripPort(_ entry: String) -> String {
        if entry.hasPrefix("["), let close = entry.firstIndex(of: "]") {
            return String(entry[entry.index(after: entry.startIndex)..<close])
        }
        if entry.filter({ $0 == ":" }).count == 1, let colon = entry.firstIndex(of: ":") {
            return String(entry[..<colon])
        }
        return entry
    }

    /// The 4 or 16 bytes of an IPv4 or IPv6 address, or nil when `text` is neither.
    static func bytes(of text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }
}

private extension StringProtocol {
    func trimmingSpaces() -> String {
        var result = Substring(self)
        while result.first == " " || result.first == "\t" { result.removeFirst() }
        while result.last == " " || result.last == "\t" { result.removeLast() }
        return String(result)
    }
}
