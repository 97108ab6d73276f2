#!/usr/bin/env bash
# Builds clusterd and hactl as Resources/install.sh installs them and the benchmarks measure
# them: a release build with Swift's standard library and Foundation linked in
# (--static-swift-stdlib), into .build/static/release. Such a clusterd needs no Swift toolchain
# on the node, locks a third of the memory (34 MB instead of 83 MB with mlockall) and spends
# less CPU per heartbeat round than one that calls into the shared Swift libraries (see the
# README, Benchmarks). Further products may be named (the benchmarks add vigil-lab, so that it
# finds the nodes' binaries beside itself).
# Usage: Resources/build-release.sh [PRODUCT...]
set -euo pipefail
cd "$(dirname "$0")/.."
for product in clusterd hactl "$@"; do
  swift build -c release --static-swift-stdlib --build-path .build/static --product "$product" >/dev/null
done
