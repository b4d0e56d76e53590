#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An IP address as its bytes (4 for IPv4, 16 for IPv6).
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    public var bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// A host as a URL carries it, when it is an address literal: any form `inet_aton` takes
    /// (`127.0.0.1`, `2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`) — the forms a system
    /// resolver would also treat as an address, so none slips past as a "name" — or IPv6, with
    /// or without brackets (a zone id is refused: nil). Nil for a name.
    public init?(literal host: String) {
        var text = host
        if text.hasPrefix("["), text.hasSuffix("]") { text = String(text.dropFirst().dropLast()) }
        guard !text.isEmpty, !text.contains("%") else { return nil }
        if text.contains(":") {
            var v6 = in6_addr()
            guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
            self.bytes = withUnsafeBytes(of: &v6) { Array($0) }
            return
        }
        // inet_aton accepts trailing garbage after a space; a URL host has none, but be strict.
        guard text.allSatisfy({ Self.ipv4Characters.contains($0) }) else { return nil }
        var v4 = in_addr()
        guard inet_aton(text, &v4) != 0 else { return nil }
        self.bytes = withUnsafeBytes(of: &v4) { Array($0) }
    }

    private static let ipv4Characters = Set("0123456789abcdefABCDEFxX.")

    /// The IPv4 address an IPv6 one carries (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
    /// `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`), or self.
    public var unwrapped: IPAddress {
        guard bytes.count == 16 else { return self }
        let head = bytes[0..<12]
        let mapped = head.elementsEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff])
        let compatible = head.allSatisfy { $0 == 0 } && !(bytes[12] == 0 && bytes[13] == 0 && bytes[14] == 0 && bytes[15] <= 1)
        let nat64 = head.elementsEqual([0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0])
        if mapped || compatible || nat64 { return IPAddress(bytes: Array(bytes[12..<16]))! }
        return self
    }

    public var isLoopback: Bool {
        let a = unwrapped
        if a.bytes.count == 4 { return a.bytes[0] == 127 }
        return a.bytes == [UInt8](repeating: 0, count: 15) + [1]
    }

    /// Loopback, private (RFC 1918, fc00::/7, CGNAT 100.64/10), link-local (169.254/16,
    /// fe80::/10), unspecified (0.0.0.0/8, ::), multicast, broadcast or reserved: nothing a
    /// public webhook receiver has.
    public var isRefusedForWebhooks: Bool {
        let a = unwrapped
        let b = a.bytes
        if b.count == 4 {
            switch b[0] {
            case 0, 10, 127: return true
            case 100: return b[1] & 0xC0 == 64
            case 169: return b[1] == 254
            case 172: return b[1] & 0xF0 == 16
            case 192: return (b[1] == 168) || (b[1] == 0 && b[2] == 0)
            case 198: return b[1] & 0xFE == 18
            case 224...255: return true
            default: return false
            }
        }
        if b.allSatisfy({ $0 == 0 }) { return true }                      // ::
        if isLoopback { return true }                                     // ::1
        if b[0] & 0xFE == 0xFC { return true }                            // fc00::/7
        if b[0] == 0xFE && b[1] & 0xC0 == 0x80 { return true }            // fe80::/10
        if b[0] == 0xFE && b[1] & 0xC0 == 0xC0 { return true }            // fec0::/10 (old site-local)
        if b[0] == 0xFF { return true }                                   // multicast
        return false
    }

    public var description: String {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        var groups: [String] = []
        for i in stride(from: 0, to: 16, by: 2) { groups.append(String(UInt16(bytes[i]) << 8 | UInt16(bytes[i + 1]), radix: 16)) }
        return groups.joined(separator: ":")
    }
}
