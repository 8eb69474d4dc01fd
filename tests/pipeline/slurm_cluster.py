"""A real single-node SLURM cluster with accounting, brought up for the pipeline tests.

``SlurmCluster`` starts munged, a private MariaDB, slurmdbd, slurmctld and slurmd on this machine
(Debian's slurm 22.05 packages, installed by ``.ci/install-slurm``), registers the cluster, an
account and root as its user in the accounting database (so ``sacct`` answers at once, as the
Snakemake SLURM executor plugin needs), and waits until the node is idle. Everything but the
config files lives in a fresh scratch directory.

The config must be at ``/etc/slurm/slurm.conf``: the Snakemake jobstep plugin strips every
``SLURM_*`` variable (``SLURM_CONF`` included) before its inner ``srun``. Existing files there are
backed up and restored by ``stop()``. Needs root: slurmd runs the jobs as the submitting user and
munged must run as user munge. One cluster at a time per machine (a lock file serialises them).

Daemons run in the foreground as children of this process, each with a parent-death signal, so
they die with it even if it is killed outright; ``stop()`` (also registered with ``atexit``)
cancels jobs, terminates every daemon it started and restores ``/etc/slurm``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ETC = Path("/etc/slurm")
MUNGE_RUN = Path("/run/munge")
MUNGE_SOCKET = MUNGE_RUN / "munge.socket.2"
MUNGE_KEY = Path("/etc/munge/munge.key")
MARKER = "# Written by ficomm's tests/pipeline/slurm_cluster.py; restored when the cluster stops."
BACKUP_SUFFIX = ".ficomm-backup"
SCRATCH_PREFIX = "ficomm-slurm-"
LOCK_PATH = Path(tempfile.gettempdir()) / "ficomm-slurm.lock"
KEEP_FILE = "KEEP"  # marks a kept scratch directory that later runs must not delete
TERMINAL_STATES = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "TIMEOUT",
}
REQUIRED_BINARIES = (
    "munged",
    "munge",
    "mariadbd",
    "mariadb-install-db",
    "slurmdbd",
    "slurmctld",
    "slurmd",
    "slurmstepd",
    "sbatch",
    "srun",
    "squeue",
    "sinfo",
    "scontrol",
    "scancel",
    "sacct",
    "sacctmgr",
)

_PR_SET_PDEATHSIG = 1


class SlurmClusterError(RuntimeError):
    """The local SLURM cluster could not be brought up (the message carries the daemons' logs)."""


def missing_requirements() -> list[str]:
    """Why this machine cannot run a ``SlurmCluster`` (empty when it can)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("needs root (slurmd runs jobs as their user; munged runs as user munge)")
    missing = [b for b in REQUIRED_BINARIES if shutil.which(b) is None]
    if missing:
        problems.append(f"missing {', '.join(missing)} (install with `.ci/install-slurm`)")
    try:
        pwd.getpwnam("munge")
    except KeyError:
        problems.append("no user 'munge' (install the munge package)")
    return problems


def _die_with_parent() -> None:
    # Runs in the child between fork and exec (after any setuid): SIGKILL it when we die, so a
    # killed test run cannot leave daemons behind.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no file)"
    return "\n".join(text[-lines:]) if text else "(empty)"


def _step_daemons_under(prefix: str) -> list[int]:
    """slurmstepd processes holding a file whose path starts with ``prefix``, with descendants.

    slurmstepd detaches from slurmd, so it is found by what it holds open (slurmd's log in the
    cluster's scratch directory), never by its name alone."""
    roots = []
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(pid)
            if not (entry / "cmdline").read_bytes().startswith(b"slurmstepd"):
                continue
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd).startswith(prefix):
                        roots.append(pid)
                        break
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _node_topology() -> dict[str, str]:
    """The node line `slurmd -C` prints, as a dict (CPUs, Boards, ..., RealMemory)."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30, check=True)
    first = out.stdout.splitlines()[0]
    return dict(item.split("=", 1) for item in first.split())


class SlurmCluster:
    """A single-node SLURM cluster with slurmdbd accounting; use as a context manager.

    Attributes after ``start()``: ``node`` (the short hostname), ``partition`` (the default
    partition, unlimited time), ``account`` (root's default account), ``cluster_name``,
    ``scratch`` (state, logs and job output), ``ports`` (name -> TCP port).
    """

    def __init__(
        self,
        *,
        cluster_name: str = "ficomm",
        account: str = "ficomm",
        partition: str = "main",
        startup_timeout: float = 90.0,
        lock_timeout: float = 600.0,
        keep_scratch: bool = False,
    ) -> None:
        self.cluster_name = cluster_name
        self.account = account
        self.partition = partition
        self.startup_timeout = startup_timeout
        self.lock_timeout = lock_timeout
        self.keep_scratch = keep_scratch
        self.node = socket.gethostname().split(".")[0]
        self.scratch: Path | None = None
        self.ports: dict[str, int] = {}
        self.startup_seconds: float | None = None
        self.phase_seconds: dict[str, float] = {}  # bring-up time per step, for reports
        self.db_password = secrets.token_hex(12)  # MariaDB user 'slurm', for slurmdbd only
        self._procs: dict[str, subprocess.Popen] = {}
        self._written: list[Path] = []
        self._lock_file = None
        self._deadline = 0.0
        self._running = False

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> SlurmCluster:
        """Bring the cluster up; raise ``SlurmClusterError`` (with log tails) on failure."""
        problems = missing_requirements()
        if problems:
            raise SlurmClusterError("cannot start a SLURM cluster: " + "; ".join(problems))
        t0 = time.monotonic()
        self._acquire_lock()
        atexit.register(self.stop)
        self._running = True
        self._deadline = time.monotonic() + self.startup_timeout
        try:
            self._reap_stale_runs()
            self.scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
            if self.keep_scratch:
                (self.scratch / KEEP_FILE).touch()
            names = ("slurmctld", "slurmd", "slurmdbd", "mariadb")
            self.ports = dict(zip(names, _free_ports(len(names)), strict=True))
            self._write_configs()
            for step in (
                self._start_munge,
                self._start_mariadb,
                self._start_slurmdbd,
                self._register_accounting,
                self._start_slurmctld,
                self._start_slurmd,
                self._wait_accounting_ready,
            ):
                t_step = time.monotonic()
                step()
                self.phase_seconds[step.__name__.strip("_")] = time.monotonic() - t_step
        except BaseException as exc:
            report = self.logs()
            self.stop()
            if isinstance(exc, SlurmClusterError | subprocess.SubprocessError | OSError):
                raise SlurmClusterError(f"{exc}\n\n{report}") from exc
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Cancel jobs, terminate every daemon started here, restore /etc/slurm. Idempotent."""
        if not self._running:
            return
        self._running = False
        try:
            if "slurmctld" in self._procs and self._procs["slurmctld"].poll() is None:
                self._cancel_all_jobs()
            step_daemons = self._job_step_daemons()
            for name in (
                "slurmd",
                "slurmctld",
                "slurmdbd",
                "mariadb",
                "mariadb-install-db",
                "munged",
            ):
                proc = self._procs.pop(name, None)
                if proc is not None:
                    self._terminate(proc)
            for pid in step_daemons + self._job_step_daemons():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        finally:
            self._restore_configs()
            if self.scratch is not None and not self.keep_scratch:
                shutil.rmtree(self.scratch, ignore_errors=True)
            atexit.unregister(self.stop)
            self._release_lock()

    # ---------------------------------------------------------------- helpers for tests

    @property
    def env(self) -> dict[str, str]:
        """The environment for SLURM client commands (``os.environ`` without inherited SLURM_*)."""
        return {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}

    def run(
        self, *cmd: str, check: bool = True, timeout: float = 30, **kwargs
    ) -> subprocess.CompletedProcess:
        """Run a SLURM client command; on failure raise with its output."""
        res = subprocess.run(
            list(cmd),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            stdin=subprocess.DEVNULL,
            **kwargs,
        )
        if check and res.returncode != 0:
            raise SlurmClusterError(
                f"`{' '.join(cmd)}` exited {res.returncode}\nstdout: {res.stdout}\n"
                f"stderr: {res.stderr}"
            )
        return res

    def sbatch(self, script: str, *options: str, cwd: str | os.PathLike | None = None) -> str:
        """Submit a batch script (its text) and return the job id."""
        res = subprocess.run(
            ["sbatch", "--parsable", *options],
            input=script,
            capture_output=True,
            text=True,
            timeout=30,
            env=self.env,
            cwd=cwd or self.scratch,
        )
        if res.returncode != 0:
            raise SlurmClusterError(f"sbatch failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout.strip().split(";")[0]

    def job_state(self, job_id: str) -> tuple[str, str] | None:
        """(State, ExitCode) of a job's allocation as sacct reports it, or None if unknown yet."""
        res = self.run("sacct", "-X", "-n", "-P", "-j", job_id, "--format=JobIDRaw,State,ExitCode")
        for line in res.stdout.splitlines():
            jid, state, exit_code = line.split("|")
            if jid == job_id:
                return state.split()[0], exit_code
        return None

    def wait_for_job(self, job_id: str, timeout: float = 60) -> tuple[str, str]:
        """Poll sacct until the job is in a terminal state; return (State, ExitCode)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.job_state(job_id)
            if state is not None and state[0] in TERMINAL_STATES:
                return state
            if time.monotonic() > deadline:
                raise SlurmClusterError(
                    f"job {job_id} not finished after {timeout:.0f} s (last sacct: {state})\n"
                    + self.logs()
                )
            time.sleep(0.3)

    def logs(self, lines: int = 25) -> str:
        """The last lines of every daemon's log, for error messages."""
        if self.scratch is None:
            return "(no scratch directory)"
        parts = []
        for path in sorted((self.scratch / "log").glob("*")):
            parts.append(f"--- {path.name} (last {lines} lines) ---\n{_tail(path, lines)}")
        return "\n".join(parts) if parts else "(no logs)"

    # ---------------------------------------------------------------- internals

    def _acquire_lock(self) -> None:
        self._lock_file = open(LOCK_PATH, "w")
        deadline = time.monotonic() + self.lock_timeout
        told = False
        while True:
            try:
                fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if not told:
                    print(f"[slurm_cluster] waiting for {LOCK_PATH}: another test cluster is up")
                    told = True
                if time.monotonic() > deadline:
                    self._lock_file.close()
                    self._lock_file = None
                    raise SlurmClusterError(
                        f"another SLURM test cluster held {LOCK_PATH} for {self.lock_timeout:.0f}"
                        " s; only one can run per machine (it owns /etc/slurm/slurm.conf)"
                    ) from None
                time.sleep(1)

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def _remaining(self, what: str) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise SlurmClusterError(
                f"SLURM cluster not up within {self.startup_timeout:.0f} s (waiting for {what})"
            )
        return left

    def _wait(self, what: str, ready, proc_name: str | None = None) -> None:
        """Poll ``ready()`` until true; fail early if the daemon being waited for died."""
        while True:
            if proc_name is not None:
                proc = self._procs[proc_name]
                if proc.poll() is not None:
                    raise SlurmClusterError(f"{proc_name} exited with {proc.returncode}")
            self._remaining(what)
            try:
                if ready():
                    return
            except (subprocess.SubprocessError, OSError):
                pass
            time.sleep(0.2)

    def _spawn(self, name: str, cmd: list[str], *, user: str | None = None) -> None:
        log = open(self.scratch / "log" / f"{name}.out", "ab")
        with log:
            self._procs[name] = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                user=user,
                group=user,
                extra_groups=[] if user else None,
                preexec_fn=_die_with_parent,
                start_new_session=True,
            )

    def _ok(self, *cmd: str, timeout: float = 10) -> bool:
        res = subprocess.run(
            list(cmd),
            capture_output=True,
            timeout=timeout,
            env=self.env,
            stdin=subprocess.DEVNULL,
        )
        return res.returncode == 0

    def _write_configs(self) -> None:
        s = self.scratch
        for sub in ("log", "run", "ctld", "spool", "db"):
            (s / sub).mkdir()
        topo = _node_topology()
        # Leave headroom below the machine's memory: slurmd drains a node that reports less
        # than RealMemory.
        real_mem = int(topo["RealMemory"])
        mem = max(512, min(int(real_mem * 0.9), real_mem - 512))
        node_keys = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
        node_topo = " ".join(f"{k}={topo[k]}" for k in node_keys if k in topo)
        slurm_conf = f"""{MARKER}
ClusterName={self.cluster_name}
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={self.ports["slurmctld"]}
SlurmdPort={self.ports["slurmd"]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={s}/ctld
SlurmdSpoolDir={s}/spool
SlurmctldPidFile={s}/run/slurmctld.pid
SlurmdPidFile={s}/run/slurmd.pid
SlurmctldLogFile={s}/log/slurmctld.log
SlurmdLogFile={s}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups (containers, machines without systemd): track processes through /proc.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# Without a default, a job lacking --mem would take the whole node's memory.
DefMemPerCPU=512
ReturnToService=2
# Start batch jobs as soon as they are submitted (the default batches them every 3 s).
SchedulerParameters=batch_sched_delay=0
# Keep finished jobs visible to squeue/scontrol for 10 min (the Snakemake SLURM plugin's
# squeue status mode wants MinJobAge >= 3 x its first status-check delay).
MinJobAge=600
KillWait=5
InactiveLimit=0
Waittime=0
SlurmdTimeout=300
SlurmctldTimeout=120
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={self.ports["slurmdbd"]}
JobCompType=jobcomp/none
NodeName={self.node} NodeAddr=127.0.0.1 {node_topo} RealMemory={mem} State=UNKNOWN
PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""
        slurmdbd_conf = f"""{MARKER}
AuthType=auth/munge
DbdAddr=127.0.0.1
DbdHost={self.node}
DbdPort={self.ports["slurmdbd"]}
SlurmUser=root
LogFile={s}/log/slurmdbd.log
PidFile={s}/run/slurmdbd.pid
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.ports["mariadb"]}
StorageUser=slurm
StoragePass={self.db_password}
StorageLoc=slurm_acct_db
"""
        ETC.mkdir(parents=True, exist_ok=True)
        self._install_config(ETC / "slurm.conf", slurm_conf, 0o644)
        self._install_config(ETC / "slurmdbd.conf", slurmdbd_conf, 0o600)

    def _install_config(self, path: Path, text: str, mode: int) -> None:
        backup = path.with_name(path.name + BACKUP_SUFFIX)
        # A file carrying our marker is a leftover of a killed run: overwrite, do not back up.
        if path.exists() and not backup.exists() and MARKER not in path.read_text(errors="replace"):
            shutil.copy2(path, backup)
        tmp = path.with_name(path.name + ".ficomm-tmp")
        tmp.write_text(text)
        os.chown(tmp, 0, 0)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        self._written.append(path)

    def _restore_configs(self) -> None:
        for path in self._written:
            backup = path.with_name(path.name + BACKUP_SUFFIX)
            if backup.exists():
                os.replace(backup, path)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        self._written.clear()

    def _start_munge(self) -> None:
        if MUNGE_SOCKET.exists() and self._munge_works():
            return  # a munged is already serving the default socket (e.g. the system's): use it
        munge = pwd.getpwnam("munge")
        for d in (MUNGE_RUN, Path("/var/lib/munge"), Path("/var/log/munge")):
            d.mkdir(parents=True, exist_ok=True)
            os.chown(d, munge.pw_uid, munge.pw_gid)
        os.chmod(MUNGE_RUN, 0o755)
        if not MUNGE_KEY.exists():
            MUNGE_KEY.parent.mkdir(mode=0o700, exist_ok=True)
            os.chown(MUNGE_KEY.parent, munge.pw_uid, munge.pw_gid)
            MUNGE_KEY.write_bytes(secrets.token_bytes(128))
            os.chown(MUNGE_KEY, munge.pw_uid, munge.pw_gid)
            os.chmod(MUNGE_KEY, 0o600)
        # A stale socket from a killed munged makes a new one refuse to start.
        with contextlib.suppress(FileNotFoundError):
            MUNGE_SOCKET.unlink()
        self._spawn("munged", ["munged", "--foreground"], user="munge")
        self._wait("munged", self._munge_works, "munged")

    def _munge_works(self) -> bool:
        cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=5)
        if cred.returncode != 0:
            return False
        return (
            subprocess.run(
                ["unmunge"], input=cred.stdout, capture_output=True, timeout=5
            ).returncode
            == 0
        )

    def _start_mariadb(self) -> None:
        s = self.scratch
        datadir = s / "db" / "data"
        self._spawn(
            "mariadb-install-db",
            [
                "mariadb-install-db",
                "--no-defaults",
                "--user=root",
                f"--datadir={datadir}",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
                "--skip-name-resolve",
            ],
        )
        install = self._procs["mariadb-install-db"]
        self._wait("mariadb-install-db", lambda: install.poll() is not None)
        if install.returncode != 0:
            raise SlurmClusterError(f"mariadb-install-db exited {install.returncode}")
        init = s / "db" / "init.sql"
        init.write_text(
            f"CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '{self.db_password}';\n"
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';\n"
        )
        self._spawn(
            "mariadb",
            [
                "mariadbd",
                "--no-defaults",
                "--user=root",
                f"--datadir={datadir}",
                f"--socket={s}/db/mysqld.sock",
                f"--pid-file={s}/run/mariadb.pid",
                f"--log-error={s}/log/mariadb.log",
                f"--port={self.ports['mariadb']}",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
                f"--init-file={init}",
                # slurmdbd's recommended InnoDB settings; durability is irrelevant here.
                "--innodb-buffer-pool-size=128M",
                "--innodb-log-file-size=16M",
                "--innodb-lock-wait-timeout=900",
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-doublewrite=0",
            ],
        )
        self._wait("MariaDB", lambda: _port_open(self.ports["mariadb"]), "mariadb")

    def _start_slurmdbd(self) -> None:
        self._spawn("slurmdbd", ["slurmdbd", "-D"])
        self._wait("slurmdbd", lambda: _port_open(self.ports["slurmdbd"]), "slurmdbd")
        self._wait(
            "slurmdbd answering sacctmgr",
            lambda: self._ok("sacctmgr", "-n", "-P", "show", "cluster"),
            "slurmdbd",
        )

    def _register_accounting(self) -> None:
        # -i: no confirmation prompt. Adding what exists already prints a notice and exits 1,
        # so check the result rather than the exit status.
        n = self.cluster_name
        self.run("sacctmgr", "-i", "add", "cluster", n, check=False)
        self.run(
            "sacctmgr", "-i", "add", "account", self.account, f"Cluster={n}",
            "Description=ficomm tests", "Organization=ficomm", check=False,
        )  # fmt: skip
        self.run(
            "sacctmgr", "-i", "add", "user", "root", f"Account={self.account}",
            f"DefaultAccount={self.account}", f"Cluster={n}", check=False,
        )  # fmt: skip
        self.run(
            "sacctmgr", "-i", "modify", "user", "root", "set",
            f"DefaultAccount={self.account}", check=False,
        )  # fmt: skip
        res = self.run("sacctmgr", "-n", "-P", "show", "user", "root", "format=User,DefaultAccount")
        if f"root|{self.account}" not in res.stdout.split():
            raise SlurmClusterError(
                f"root's default account is not {self.account!r} in accounting: {res.stdout!r}"
            )

    def _start_slurmctld(self) -> None:
        self._spawn("slurmctld", ["slurmctld", "-D"])
        self._wait(
            "slurmctld",
            lambda: "UP" in self.run("scontrol", "ping", check=False, timeout=10).stdout,
            "slurmctld",
        )

    def _start_slurmd(self) -> None:
        self._spawn("slurmd", ["slurmd", "-D"])

        def idle() -> bool:
            out = self.run("sinfo", "-h", "-n", self.node, "-o", "%T", check=False).stdout
            return out.strip() == "idle"

        self._wait(f"node {self.node} idle", idle, "slurmd")

    def _wait_accounting_ready(self) -> None:
        # The exact query the Snakemake SLURM plugin polls with must succeed from the start.
        self._wait(
            "sacct",
            lambda: self._ok("sacct", "-X", "--parsable2", "--clusters", "all", "--noheader"),
        )

    def _cancel_all_jobs(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            ids = self.run("squeue", "-h", "-o", "%i", check=False, timeout=10).stdout.split()
            if not ids:
                return
            self.run("scancel", "--full", *ids, check=False, timeout=10)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if not self.run("squeue", "-h", "-o", "%i", check=False, timeout=10).stdout.split():
                    return
                time.sleep(0.3)

    def _job_step_daemons(self) -> list[int]:
        """slurmstepd processes of this cluster and all their descendants."""
        if self.scratch is None:
            return []
        return _step_daemons_under(str(self.scratch) + "/")

    def _reap_stale_runs(self) -> None:
        """Kill job steps and delete scratch directories left by a killed earlier run.

        Called with the machine-wide lock held, so no other cluster is live: whatever sits in
        another scratch directory is stale. (The daemons themselves died with their parent.)"""
        base = Path(tempfile.gettempdir())
        for pid in _step_daemons_under(str(base / SCRATCH_PREFIX)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for stale in base.glob(SCRATCH_PREFIX + "*"):
            if stale.is_dir() and not (stale / KEEP_FILE).exists():
                shutil.rmtree(stale, ignore_errors=True)

    @staticmethod
    def _terminate(proc: subprocess.Popen, grace: float = 10) -> None:
        """Stop a daemon and whatever it started in its process group (its own session)."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(wait)
        # The group may outlive its leader (e.g. mariadb-install-db's bootstrap server).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
