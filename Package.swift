// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Vigil",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "clusterd", targets: ["clusterd"]),
        .executable(name: "hactl", targets: ["hactl"]),
        .executable(name: "vigil-lab", targets: ["vigil-lab"]),
    ],
    dependencies: [
        // Command-line parsing for clusterd, hactl and vigil-lab.
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // HMAC-SHA256 for authenticating cluster traffic (BoringSSL-backed on Linux).
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        // The Prometheus text format for clusterd's metrics endpoint (issue 12).
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // libqb (Debian: libqb-dev) for local IPC between hactl and clusterd.
        .systemLibrary(
            name: "CQB",
            providers: [.apt(["libqb-dev"])]
        ),
        // libsystemd's sd-bus (Debian: libsystemd-dev) for `systemd:UNIT` resources (issue 13).
        .systemLibrary(
            name: "CSystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        // Deterministic core: config, TOML, membership, quorum, coordinator, scheduler. No I/O.
        .target(name: "VigilCore"),
        // Wire format and packet authentication (HMAC-SHA256, replay windows).
        .target(
            name: "VigilWire",
            dependencies: ["VigilCore", .product(name: "Crypto", package: "swift-crypto")]
        ),
        // Thin system shells: UDP sockets, rtnetlink, ARP/NA, files, poll reactor.
        .target(name: "VigilSystem", dependencies: ["VigilCore", "CVigilSys"]),
        // Linux headers (signalfd, rtnetlink, packet sockets) that the Glibc module does not surface.
        .target(name: "CVigilSys"),
        // Corosync's client libraries (Debian's libcpg-dev, libvotequorum-dev, libcmap-dev,
        // libcfg-dev, libcorosync-common-dev) behind a small C layer that queues callbacks as events.
        .target(name: "CVigilCorosync", linkerSettings: [
            .linkedLibrary("cpg"), .linkedLibrary("votequorum"), .linkedLibrary("cmap"),
            .linkedLibrary("cfg"), .linkedLibrary("corosync_common"),
        ]),
        // The Swift shell over it: Corosync as a membership engine (issue 10).
        .target(name: "VigilCorosync", dependencies: ["CVigilCorosync", "VigilSystem"]),
        // The Swift shell over sd-bus: systemd's manager, asynchronously on clusterd's reactor.
        .target(name: "VigilSystemd", dependencies: ["CSystemd", "VigilCore", "VigilSystem"]),
        // libqb IPC server and client plus the hactl request/response protocol.
        .target(name: "VigilIPC", dependencies: ["CQB", "VigilCore", "VigilSystem"]),
        // The node runtime: drives the core engine with real sockets, netlink and IPC.
        .target(
            name: "VigilDaemon",
            dependencies: [
                "VigilCore", "VigilWire", "VigilSystem", "VigilIPC", "VigilCorosync", "VigilSystemd",
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // hactl's commands and output formatting.
        .target(name: "VigilControl", dependencies: ["VigilCore", "VigilIPC", "VigilSystem", "VigilSystemd"]),
        // Network-namespace lab used by the integration tests, the demo and the benchmark.
        .target(name: "VigilLab", dependencies: ["VigilCore"]),
        // Simulated clock and network for driving many engines in unit tests.
        .target(name: "VigilTestKit", dependencies: ["VigilCore"]),
        .executableTarget(
            name: "clusterd",
            dependencies: [
                "VigilDaemon", "VigilCore", "VigilWire",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "hactl",
            dependencies: [
                "VigilControl",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "vigil-lab",
            dependencies: [
                "VigilLab", "VigilCore", "VigilIPC", "VigilSystem", "VigilCorosync", "CQB", "VigilTestKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Scheduler/ holds the regression scenarios, read from the source tree by the test.
        .testTarget(name: "VigilCoreTests", dependencies: ["VigilCore", "VigilTestKit"], exclude: ["Scheduler"]),
        .testTarget(name: "VigilWireTests", dependencies: ["VigilWire", "VigilCore"]),
        // Hostile-input parsers as fuzz targets; the corpus is replayed by the tests.
        .target(name: "VigilFuzz", dependencies: ["VigilCore", "VigilWire", "VigilSystem"]),
        .testTarget(name: "VigilFuzzTests", dependencies: ["VigilFuzz", "VigilCore", "VigilWire", "VigilTestKit"], exclude: ["Corpus"]),
        .testTarget(name: "VigilIntegrationTests", dependencies: ["VigilLab", "VigilCore", "VigilWire", "VigilSystem", "VigilDaemon", "VigilIPC", "VigilControl", "CVigilSys"]),
    ],
    swiftLanguageModes: [.v6]
)

// The libFuzzer executable exists only for Examples/bench/fuzz.sh (VIGIL_FUZZ=1): it has no
// main of its own (libFuzzer provides it under --sanitize=fuzzer), so ordinary builds leave it out.
if Context.environment["VIGIL_FUZZ"] == "1" {
    package.targets.append(.executableTarget(name: "vigil-fuzz", dependencies: ["VigilFuzz"]))
    package.products.append(.executable(name: "vigil-fuzz", targets: ["vigil-fuzz"]))
}
