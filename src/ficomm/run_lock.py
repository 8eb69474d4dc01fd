"""One writer per run directory: an exclusive lock on `<out>/ficomm.lock`.

The lock is a POSIX record lock (`fcntl.lockf`, i.e. fcntl F_SETLK) on the whole file. The
kernel drops it when the holding process exits in any way, SIGKILL included, so a stale lock
never needs clearing by hand; and unlike BSD `flock`, POSIX locks are implemented by NFS
(NLM on NFSv3, natively on NFSv4), so runs on different nodes of a cluster sharing the run
directory exclude each other too. On NFS the server releases the lock of a node that crashed
when that node's lease expires (about 90 s on NFSv4). Two POSIX-lock rules shape the code: a
lock belongs to the process (children do not inherit it), and closing *any* descriptor of the
file in the holding process releases it, so nothing else in ficomm opens this file.

The file is never deleted (deleting it would let a process that opened the old file and one
that created a new file both hold "the" lock). After locking, the holder writes its host and
pid into it, which a refused writer reads back for its message.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = "ficomm.lock"


class RunDirBusy(RuntimeError):
    """Another process holds the run directory's lock."""


class RunLock:
    """`with RunLock(out):` holds out/ficomm.lock exclusively, or raises RunDirBusy having
    written nothing (the directory and an empty lock file are created when missing)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        # No O_TRUNC: a refused writer must not clear the holder's record.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                os.close(fd)
                raise OSError(
                    exc.errno,
                    f"{exc.strerror} (the file system may not support POSIX locks)",
                    str(self.path),
                ) from None
            holder = _read_holder(fd)
            os.close(fd)
            raise RunDirBusy(
                f"out: {self.directory} is in use by another ficomm train ({holder}); it was "
                "left untouched; wait for that run to end (or stop it), or choose another out="
            ) from None
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None


def _read_holder(fd: int, wait: float = 2.0) -> str:
    """'pid P on host H since T' from the lock file; the holder writes it right after locking,
    so an empty file is re-read for a moment before giving up."""
    deadline = time.monotonic() + wait
    while True:
        try:
            record = json.loads(os.pread(fd, 4096, 0).decode())
            return f"pid {record['pid']} on host {record['host']} since {record['since']}"
        except (ValueError, KeyError, TypeError, OSError):
            if time.monotonic() > deadline:
                return "holder not recorded"
            time.sleep(0.05)
