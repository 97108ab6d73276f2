import Glibc
import VigilCore

/// Where a fence agent named in a `[[fence]]` entry is: an absolute path as given, a name
/// looked up in `FenceDevice.searchPath` (clusterd runs it, hactl reads its metadata).
public enum FenceAgentPath {
    public static func resolve(_ agent: String) -> String? {
        if agent.hasPrefix("/") { return access(agent, X_OK) == 0 ? agent : nil }
        return FenceDevice.searchPath.map { "\($0)/\(agent)" }.first { access($0, X_OK) == 0 }
    }
}
