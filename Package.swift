// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "concertd",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "concertd", targets: ["concertd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.0"),
        // Settings come from flags and the environment only, so none of its file-format traits.
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0", traits: []),
    ],
    targets: [
        // Pure domain: models, rules, errors. No I/O, no third-party imports.
        .target(name: "ConcertDomain"),

        // Storage protocols shared by every engine.
        .target(name: "ConcertStore", dependencies: ["ConcertDomain"]),
        .target(
            name: "ConcertSQLite",
            dependencies: ["ConcertDomain", "ConcertStore", .product(name: "GRDB", package: "GRDB.swift")]
        ),
        .target(
            name: "ConcertPostgres",
            dependencies: [
                "ConcertDomain", "ConcertStore", "SharedState", "Batching",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // Calls that arrive together go as one, each caller getting its own answer (no I/O).
        .target(name: "Batching"),

        // The shared state's contracts only: waiting room, response cache, rate limiter and token
        // claims protocols, the queue token format, and the error an unreachable store becomes.
        .target(name: "SharedState", dependencies: ["ConcertDomain"]),
        // The shared state in this process's memory, for one instance (SQLite, tests).
        // Also the response cache whose bodies live in each instance's memory and whose
        // generations live in PostgreSQL or Redis (`GenerationCheckedCache`).
        .target(name: "ConcertInProcess", dependencies: ["ConcertDomain", "SharedState", "Batching"]),

        // A small RESP2 client on SwiftNIO (no Swift Redis package can be installed here).
        .target(
            name: "RESPClient",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // Waiting room and cache in Redis, shared by every instance.
        .target(
            name: "ConcertRedis",
            dependencies: ["ConcertDomain", "SharedState", "RESPClient", "Batching"]
        ),

        // Webhooks: the SSRF guard and its injected resolver, the signing, a small NIO HTTP client
        // that connects to the address it checked, and the relay that drains the outbox.
        .target(
            name: "Webhooks",
            dependencies: [
                "ConcertDomain", "ConcertStore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // HTTP layer: routes, auth, errors. It sees storage and shared state as protocols only.
        .target(
            name: "ConcertAPI",
            dependencies: [
                "ConcertDomain", "ConcertStore", "SharedState", "Webhooks",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Configuration", package: "swift-configuration"),
            ],
            resources: [.copy("Resources/openapi.yaml"), .copy("Resources/web")]
        ),
        // The composition root: chooses the engines from the configuration and builds the
        // application on them; the commands that need a store (serve, migrate, verify).
        .target(
            name: "ConcertServer",
            dependencies: [
                "ConcertAPI", "ConcertDomain", "ConcertStore", "ConcertSQLite", "ConcertPostgres", "SharedState",
                "ConcertInProcess", "ConcertRedis",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "concertd",
            dependencies: [
                "ConcertAPI", "ConcertServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // Helpers shared by the test targets (throwaway databases, a start gate for races).
        .target(
            name: "ConcertTestSupport",
            dependencies: [
                "ConcertPostgres",
                "ConcertStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Tests/ConcertTestSupport"
        ),
        .testTarget(
            name: "ConcertDomainTests",
            dependencies: ["ConcertDomain", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .testTarget(
            name: "ConcertStoreTests",
            dependencies: [
                "ConcertDomain", "ConcertStore", "ConcertSQLite", "ConcertPostgres", "ConcertTestSupport", "SharedState",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "SharedStateTests",
            dependencies: ["ConcertDomain", "SharedState", "ConcertInProcess", "ConcertRedis", "RESPClient", "ConcertPostgres",
                           "ConcertTestSupport",
                           .product(name: "Crypto", package: "swift-crypto")]
        ),
        .testTarget(name: "RESPClientTests", dependencies: ["RESPClient", "ConcertTestSupport"]),
        .testTarget(
            name: "ConcertAPITests",
            dependencies: [
                "ConcertAPI", "ConcertServer", "ConcertDomain", "ConcertStore", "ConcertTestSupport", "RESPClient", "SharedState", "Webhooks",
                "ConcertPostgres",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
