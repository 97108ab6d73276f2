#!/usr/bin/env bash
# Unplanned failover benchmark: N times, a fresh three-node cluster in namespaces with
# default timing, a client pinging the floating IP every 10 ms, the owner SIGKILLed and its
# links taken down. Last line: outage_ms min=<x> median=<y> max=<z> runs=<n>
# Usage: Examples/bench/failover.sh [--runs N] [--preferred NODE_NUMBER]
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then echo "failover.sh needs root: it creates network namespaces" >&2; exit 1; fi
bash .ci/install-deps.sh
swift build -c release >/dev/null
exec .build/release/vigil-lab bench "$@"
