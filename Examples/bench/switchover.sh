#!/usr/bin/env bash
# Planned switchover benchmark: a three-node cluster in namespaces with default timing, a client
# pinging the floating IP every 10 ms, and 'hactl move web-ip NODE --wait' back and forth between
# node1 and node2. Last line: switchover_gap_ms min=<x> median=<y> max=<z> runs=<n>
# Usage: Examples/bench/switchover.sh [--runs N]
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then echo "switchover.sh needs root: it creates network namespaces" >&2; exit 1; fi
bash .ci/install-deps.sh
# clusterd and hactl as Resources/install.sh builds them, vigil-lab beside them.
bash Resources/build-release.sh vigil-lab
exec .build/static/release/vigil-lab switchover "$@"
