# Sourced by the benchmark scripts (not run on its own): from the package's root, as root (the
# labs create network namespaces), with the Debian packages installed, and clusterd and hactl
# built as Resources/install.sh builds them, vigil-lab beside them.
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then echo "$(basename "$0") needs root: it creates network namespaces" >&2; exit 1; fi
bash .ci/install-deps.sh
bash Resources/build-release.sh vigil-lab
