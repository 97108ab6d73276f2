#!/usr/bin/env bash
# Builds clusterd and hactl as Resources/install.sh installs them and the benchmarks measure
# them: a release build with Swift's standard library and Foundation linked in
# (--static-swift-stdlib), into .build/static/release. Such a clusterd needs no Swift toolchain
# on the node, locks a third of the memory (34 MB instead of 83 MB with mlockall) and spends
# less CPU per heartbeat round than one that calls into the shared Swift libraries (see the
# README, Benchmarks).
# Usage: Resources/build-release.sh
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --static-swift-stdlib --build-path .build/static --product clusterd >/dev/null
swift build -c release --static-swift-stdlib --build-path .build/static --product hactl >/dev/null
