#!/usr/bin/env bash
# hactl status latency: a settled three-node cluster in namespaces, then 'hactl status' run
# 30 times as a whole process inside node1's namespace (spawn to exit), with hactl built as
# Resources/install.sh installs it (Swift's standard library and FoundationEssentials linked
# statically). Last line: hactl_status_ms min=<x> median=<y> max=<z> runs=<n>
# Usage: Examples/bench/hactl-status.sh [--runs N]
set -euo pipefail
source "$(dirname "$0")/prepare.sh"
exec .build/static/release/vigil-lab status-latency "$@"
