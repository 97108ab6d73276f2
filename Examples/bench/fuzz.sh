#!/bin/bash
# Fuzzes every parser that faces hostile input with libFuzzer (Sources/VigilFuzz), S seconds per
# target (default 60). Crashing inputs are kept in .build/fuzz/artifacts/TARGET/; copy one into
# Tests/VigilFuzzTests/Corpus/TARGET/ to make it a regression test, then fix the parser.
# Last line: fuzz targets=<n> execs=<total> crashes=<n>
set -u
cd "$(dirname "$0")/../.."
per=60
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) per="${2:-}"; shift 2 ;;
        *) echo "usage: $0 [--seconds S]" >&2; exit 64 ;;
    esac
done
case "$per" in ''|*[!0-9]*) echo "--seconds needs a number" >&2; exit 64 ;; esac

scratch=.build/fuzz
export VIGIL_FUZZ=1
# The Swift backtracer can hang on a crash under the fuzzer.
export SWIFT_BACKTRACE=enable=no
echo "building the fuzzer (release, -sanitize=fuzzer,address) in $scratch ..."
if ! swift build -c release --scratch-path "$scratch" --product vigil-fuzz --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address >"$scratch.log" 2>&1; then
    tail -30 "$scratch.log"
    echo "fuzz: build failed (see $scratch.log)"
    exit 1
fi
bin="$scratch/release/vigil-fuzz"

targets=0; total=0; crashes=0; broken=0
for t in envelope message config netlink statefile metadata engine; do
    case "$t" in
        config) maxlen=65536 ;;
        envelope|message) maxlen=20200 ;;
        *) maxlen=16384 ;;
    esac
    work=$(mktemp -d)
    artifacts="$scratch/artifacts/$t/"
    mkdir -p "$artifacts"
    out=$(VIGIL_FUZZ_TARGET="$t" "$bin" -max_total_time="$per" -max_len="$maxlen" -print_final_stats=1 -rss_limit_mb=4096 \
        -artifact_prefix="$artifacts" "$work" "Tests/VigilFuzzTests/Corpus/$t" 2>&1)
    rc=$?
    rm -rf "$work"
    targets=$((targets + 1))
    # A binary linked without libFuzzer runs an empty main and exits 0: refuse it.
    if ! grep -q "INFO: Loaded" <<<"$out"; then
        echo "$t: the binary is not driven by libFuzzer (no 'INFO: Loaded' line)"
        broken=$((broken + 1)); continue
    fi
    cov=$(grep -o "cov: [0-9]*" <<<"$out" | tail -1 | awk '{print $2}')
    execs=$(grep -o "stat::number_of_executed_units: [0-9]*" <<<"$out" | awk '{print $2}')
    execs=${execs:-0}
    total=$((total + execs))
    if [ "${cov:-0}" -eq 0 ]; then
        echo "$t: no coverage reported"
        broken=$((broken + 1))
    fi
    if [ $rc -ne 0 ]; then
        crashes=$((crashes + 1))
        echo "$t: CRASH (exit $rc) after $execs runs; input kept in $artifacts"
        grep -E "ERROR|Fatal error|deadly signal|SUMMARY" <<<"$out" | head -5
    else
        echo "$t: $execs runs in ${per}s, coverage $cov, no crash"
    fi
done
echo "fuzz targets=$targets execs=$total crashes=$crashes"
[ $crashes -eq 0 ] && [ $broken -eq 0 ]
