import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Turns a webhook URL's host name into the addresses to connect to. Injected: the relay and
/// the registration check ask it, never the system directly, so tests (and
/// `CONCERT_WEBHOOK_RESOLVER=loopback-only`) can guarantee that no lookup or connection ever
/// leaves this machine.
public protocol WebhookResolver: Sendable {
    /// The addresses of `host` (a name, never an address literal), empty when it has none.
    func resolve(host: String) async throws -> [IPAddress]
    /// Whether a connection to `address` is allowed at all (beyond the private-address rule).
    func permits(_ address: IPAddress) -> Bool
}

extension WebhookResolver {
    public func permits(_ address: IPAddress) -> Bool { true }
}

/// The system resolver (`getaddrinfo`, on NIO's blocking-IO pool).
public struct SystemWebhookResolver: WebhookResolver {
    public init() {}

    public func resolve(host: String) async throws -> [IPAddress] {
        try await NIOThreadPool.singleton.runIfActive {
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var result: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return [] }
            defer { freeaddrinfo(first) }
            var addresses: [IPAddress] = []
            var next: UnsafeMutablePointer<addrinfo>? = first
            while let info = next {
                if let sa = info.pointee.ai_addr {
                    switch Int32(sa.pointee.sa_family) {
                    case AF_INET:
                        let v4 = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
                        if let a = withUnsafeBytes(of: v4, { IPAddress(bytes: Array($0)) }) { addresses.append(a) }
                    case AF_INET6:
                        let v6 = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
                        if let a = withUnsafeBytes(of: v6, { IPAddress(bytes: Array($0)) }) { addresses.append(a) }
                    default: break
                    }
                }
                next = info.pointee.ai_next
            }
            return addresses
        }
    }
}

/// `CONCERT_WEBHOOK_RESOLVER=loopback-only`, for every test run: resolves `localhost` (and
/// `*.localhost`) to 127.0.0.1 without asking anyone, every other name to nothing, and permits
/// connections to loopback addresses only. No URL whatever can then cause a DNS lookup or a
/// connection beyond this machine.
public struct LoopbackOnlyWebhookResolver: WebhookResolver {
    public init() {}

    public func resolve(host: String) async throws -> [IPAddress] {
        let name = host.lowercased()
        if name == "localhost" || name.hasSuffix(".localhost") { return [IPAddress(bytes: [127, 0, 0, 1])!] }
        return []
    }

    public func permits(_ address: IPAddress) -> Bool { address.isLoopback }
}

/// A fixed table of names (tests): never asks anyone; connections only where `permitted` says.
public struct StaticWebhookResolver: WebhookResolver {
    public var table: [String: [IPAddress]]
    public var permitted: @Sendable (IPAddress) -> Bool

    public init(_ table: [String: [IPAddress]], permitted: @escaping @Sendable (IPAddress) -> Bool = { $0.isLoopback }) {
        self.table = table
        self.permitted = permitted
    }

    public func resolve(host: String) async throws -> [IPAddress] { table[host.lowercased()] ?? [] }
    public func permits(_ address: IPAddress) -> Bool { permitted(address) }
}

extension IPAddress {
    func socketAddress(port: Int) throws -> SocketAddress {
        try SocketAddress(ipAddress: description, port: port)
    }
}
