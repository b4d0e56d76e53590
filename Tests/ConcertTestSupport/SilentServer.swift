#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// A TCP socket on 127.0.0.1 that the kernel completes connections for but nobody ever reads
/// from or answers: a Redis that hangs. With `listening: false` the port is bound but refuses
/// connections, and stays reserved so nobody else picks it up during the test.
public final class SilentServer: Sendable {
    public let port: Int
    private let descriptor: Int32

    public init(listening: Bool) throws {
        #if canImport(Glibc) || canImport(Musl)
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let descriptor = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard descriptor >= 0 else { throw SocketFailure(step: "socket") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { close(descriptor); throw SocketFailure(step: "bind") }
        if listening {
            guard listen(descriptor, 64) == 0 else { close(descriptor); throw SocketFailure(step: "listen") }
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        guard named == 0 else { close(descriptor); throw SocketFailure(step: "getsockname") }
        self.descriptor = descriptor
        self.port = Int(UInt16(bigEndian: address.sin_port))
    }

    public var url: String { "redis://127.0.0.1:\(port)" }

    deinit { close(descriptor) }

    public struct SocketFailure: Error { public var step: String }
}
