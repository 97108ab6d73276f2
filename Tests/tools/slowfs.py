#!/usr/bin/python3
"""A slow disk for the tests: a FUSE passthrough of BACKING at MOUNTPOINT whose fsync (of files
and of directories) takes DELAY seconds, as on a disk behind a saturated controller or a hung
NFS server. Everything else passes straight through. Runs in the foreground until unmounted
or killed.

    slowfs.py BACKING MOUNTPOINT DELAY

Needs Debian's python3-fusepy (libfuse2) and root (or /dev/fuse access).
"""
import errno
import os
import sys
import time

from fusepy import FUSE, FuseOSError, Operations


class SlowSync(Operations):
    def __init__(self, root, delay):
        self.root = root
        self.delay = delay
        self.syncs = 0

    def _p(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    # Metadata
    def getattr(self, path, fh=None):
        st = os.lstat(self._p(path))
        keys = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size", "st_uid")
        return {k: getattr(st, k) for k in keys}

    def access(self, path, mode):
        if not os.access(self._p(path), mode):
            raise FuseOSError(errno.EACCES)

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._p(path))

    def chmod(self, path, mode):
        os.chmod(self._p(path), mode)

    def chown(self, path, uid, gid):
        os.chown(self._p(path), uid, gid)

    def mkdir(self, path, mode):
        os.mkdir(self._p(path), mode)

    def rmdir(self, path):
        os.rmdir(self._p(path))

    def unlink(self, path):
        os.unlink(self._p(path))

    def rename(self, old, new):
        os.rename(self._p(old), self._p(new))

    def utimens(self, path, times=None):
        os.utime(self._p(path), times)

    def statfs(self, path):
        st = os.statvfs(self._p(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")
        return {k: getattr(st, k) for k in keys}

    # Files
    def open(self, path, flags):
        return os.open(self._p(path), flags)

    def create(self, path, mode, fi=None):
        return os.open(self._p(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)

    def read(self, path, size, offset, fh):
        os.lseek(fh, offset, os.SEEK_SET)
        return os.read(fh, size)

    def write(self, path, data, offset, fh):
        os.lseek(fh, offset, os.SEEK_SET)
        return os.write(fh, data)

    def truncate(self, path, length, fh=None):
        with open(self._p(path), "r+b") as f:
            f.truncate(length)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        os.close(fh)
        return 0

    def fsync(self, path, datasync, fh):
        time.sleep(self.delay)
        self.syncs += 1
        return os.fsync(fh)

    def fsyncdir(self, path, datasync, fh):
        time.sleep(self.delay)
        return 0

    def opendir(self, path):
        return 0

    def releasedir(self, path, fh):
        return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: slowfs.py BACKING MOUNTPOINT DELAY_SECONDS")
    FUSE(SlowSync(sys.argv[1], float(sys.argv[3])), sys.argv[2], foreground=True, nothreads=False,
         allow_other=True, default_permissions=True)
