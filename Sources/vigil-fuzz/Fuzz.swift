import Glibc
import VigilFuzz

/// libFuzzer's entry point; the target is named by $VIGIL_FUZZ_TARGET (see FuzzTargets.all).
/// Built only by Examples/bench/fuzz.sh (VIGIL_FUZZ=1 swift build --sanitize=fuzzer ...).
let target: String = getenv("VIGIL_FUZZ_TARGET").map { String(cString: $0) } ?? "envelope"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafeRawPointer?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
    FuzzTargets.run(target, bytes)
    return 0
}
