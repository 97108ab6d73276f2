#!/usr/bin/env bash
# Planned switchover benchmark: a three-node cluster in namespaces with default timing, a client
# pinging the floating IP every 10 ms, and 'hactl move web-ip NODE --wait' back and forth between
# node1 and node2. Last line: switchover_gap_ms min=<x> median=<y> max=<z> runs=<n>
# Usage: Examples/bench/switchover.sh [--runs N]
set -euo pipefail
source "$(dirname "$0")/prepare.sh"
exec .build/static/release/vigil-lab switchover "$@"
