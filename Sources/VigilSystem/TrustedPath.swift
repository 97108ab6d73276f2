import Glibc

/// Whether clusterd, running as root, may execute a file: only if nobody but root (or
/// clusterd's own user) could have written it or replaced it, i.e. the file and every directory
/// above it (after resolving symbolic links) are owned by root and writable by no one else. A
/// directory writable by everyone is accepted only with the sticky bit (like /tmp): there, no
/// one else can rename or delete an entry owned by root. Group write is accepted for group 0.
/// Without this, a member of `admin_group` could apply a `script:/home/me/x` resource, or
/// anyone who can write a hook, and have clusterd run their code as root.
public enum TrustedPath {
    /// nil when `path` may be executed; otherwise why not, naming the offending path.
    public static func problem(_ path: String) -> String? {
        guard path.hasPrefix("/") else { return "\(path) is not an absolute path" }
        guard let resolved = realpath(path, nil) else { return "\(path): \(String(cString: strerror(errno)))" }
        let real = String(cString: resolved)
        free(resolved)
        let me = geteuid()
        // The path as given (a symbolic link in a directory someone else can write could be
        // pointed elsewhere between this check and the exec) and the path it resolves to.
        for (candidate, isResolved) in [(path, false), (real, true)] {
            var prefixes = ["/"]
            var current = ""
            for c in candidate.split(separator: "/") {
                current += "/" + c
                prefixes.append(current)
            }
            for (i, p) in prefixes.enumerated() {
                var st = stat()
                guard lstat(p, &st) == 0 else { return "\(p): \(String(cString: strerror(errno)))" }
                let shown = isResolved && real != path ? "\(p) (for \(path))" : p
                if st.st_uid != 0 && st.st_uid != me { return "\(shown) is owned by uid \(st.st_uid), not root" }
                // A link's own mode means nothing; what it points to is checked as resolved.
                if st.st_mode & S_IFMT == S_IFLNK { continue }
                let mode = st.st_mode
                let isLast = i == prefixes.count - 1
                if mode & S_IWOTH != 0 && (isLast || mode & S_ISVTX == 0) { return "\(shown) is writable by everyone" }
                if mode & S_IWGRP != 0 && st.st_gid != 0 { return "\(shown) is writable by group \(st.st_gid)" }
            }
        }
        return nil
    }
}
