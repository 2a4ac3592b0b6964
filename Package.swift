// swift-tools-version:6.0
import PackageDescription

/// One set of compiler settings for every target (see CONVENTIONS.md, "Shape").
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "farm",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "farm", targets: ["farm"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        // Child processes: an awaitable exit (pidfd on Linux 5.4 and later) and signals through the pidfd.
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", exact: "1.0.2"),
        .package(url: "https://github.com/apple/swift-openapi-runtime.git", from: "1.13.4"),
        .package(url: "https://github.com/apple/swift-openapi-urlsession.git", from: "1.4.0"),
        .package(url: "https://github.com/hummingbird-project/swift-openapi-hummingbird.git", from: "2.1.0"),
        .package(url: "https://github.com/vapor/multipart-kit.git", from: "4.7.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CFFmpeg",
            path: "Sources/CFFmpeg",
            pkgConfig: "libavformat",
            providers: [.apt(["libavformat-dev", "libavcodec-dev", "libavutil-dev", "libswscale-dev"])]
        ),
        .systemLibrary(
            name: "CVAAPI",
            path: "Sources/CVAAPI",
            pkgConfig: "libva-drm",
            providers: [.apt(["libva-dev"])]
        ),
        .systemLibrary(
            name: "CXXHash",
            path: "Sources/CXXHash",
            pkgConfig: "libxxhash",
            providers: [.apt(["libxxhash-dev"])]
        ),
        .systemLibrary(
            name: "CCurl",
            path: "Sources/CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        .target(
            name: "FarmChildProcess",
            dependencies: [.product(name: "Subprocess", package: "swift-subprocess")],
            path: "Sources/ChildProcess",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FarmMedia",
            dependencies: ["CFFmpeg"],
            path: "Sources/Media",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FarmHWEncode",
            dependencies: ["FarmMedia", "CFFmpeg", "CVAAPI"],
            path: "Sources/HWEncode",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FarmProtocol",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                "CXXHash",
            ],
            path: "Sources/Protocol",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FarmAPI",
            dependencies: [
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime")
            ],
            path: "Sources/API",
            exclude: ["openapi-generator-config.yaml"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FarmCoordinator",
            dependencies: [
                "FarmProtocol", "FarmMedia", "FarmHWEncode", "FarmChildProcess", "CCurl", "FarmAPI",
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "OpenAPIHummingbird", package: "swift-openapi-hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "_NIOFileSystem", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "MultipartKit", package: "multipart-kit"),
            ],
            path: "Sources/Coordinator",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FarmNode",
            dependencies: [
                "FarmProtocol", "FarmMedia", "FarmHWEncode",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "_NIOFileSystem", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            path: "Sources/RenderNode",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FarmCapacity",
            dependencies: ["FarmCoordinator", "FarmMedia", "FarmProtocol", "FarmChildProcess"],
            path: "Sources/Capacity",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "farm",
            dependencies: [
                "FarmCoordinator", "FarmNode", "FarmHWEncode", "FarmMedia", "FarmProtocol", "FarmChildProcess", "FarmCapacity",
                "FarmAPI",
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "OpenAPIURLSession", package: "swift-openapi-urlsession"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/farm",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FarmBenchmarks",
            dependencies: [
                "FarmCoordinator", "FarmMedia", "FarmProtocol", "FarmHWEncode",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "bench/Benchmarks",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "farm-bench",
            dependencies: [
                "FarmBenchmarks", "FarmMedia",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "bench/Commands",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FarmTestSupport",
            dependencies: ["FarmChildProcess"],
            path: "Tests/Support",
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .testTarget(
            name: "ChildProcessTests",
            dependencies: ["FarmChildProcess"],
            path: "Tests/ChildProcessTests",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CapacityUnitTests",
            dependencies: ["FarmCapacity", "FarmProtocol"],
            path: "Tests/CapacityUnitTests",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ProtocolTests",
            dependencies: [
                "FarmProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Tests/ProtocolTests",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MediaTests",
            dependencies: ["FarmMedia", "FarmHWEncode", "FarmTestSupport"],
            path: "Tests/MediaTests",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CoordinatorTests",
            dependencies: [
                "FarmCoordinator", "FarmMedia", "FarmProtocol", "FarmHWEncode", "FarmTestSupport", "FarmBenchmarks",
                "FarmAPI",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/CoordinatorTests",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "NodeTests",
            dependencies: [
                "FarmNode", "FarmMedia", "FarmHWEncode", "FarmProtocol", "FarmTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/NodeTests",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["FarmMedia", "FarmTestSupport", "FarmChildProcess"],
            path: "Tests/IntegrationTests",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SecurityTests",
            dependencies: [
                "FarmProtocol", "FarmTestSupport", "FarmChildProcess",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Tests/SecurityTests",
            swiftSettings: swiftSettings
        ),
    ]
)
