#!/usr/bin/env bash
# Three Vigil nodes and a client in network namespaces; kill the owner of a floating IP
# while the client pings it; print the outage and the timeline. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "demo.sh needs root: it creates network namespaces" >&2; exit 1; fi
bash .ci/install-deps.sh
swift build
exec .build/debug/vigil-lab demo "$@"
