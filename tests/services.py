"""Real servers for the integration tests, each started in a temporary dir on loopback and stopped
afterwards: PostgreSQL (Debian's `postgresql`) and a one-node SLURM cluster (`slurm-wlm` + `munge`).

`.ci/run` installs the packages when they are missing; a test that finds one missing fails and
says which package to install, it is not skipped. Both run their daemons as root's children; the
PostgreSQL server drops to the `postgres` user (it refuses to run as root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require(binary: str, package: str) -> str:
    path = shutil.which(binary) or next(iter(sorted(glob.glob(binary))[-1:]), None)
    if path is None:
        raise RuntimeError(f"{binary} not found: install Debian's {package} (`bash .ci/run` installs it)")
    return path


def _as_user(user: str) -> list[str]:
    """Run a command as `user` when we are root (PostgreSQL refuses root), as ourselves otherwise."""
    return ["runuser", "-u", user, "--"] if os.geteuid() == 0 else []


def _chown(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


@dataclass
class Postgres:
    url: str  # postgresql://sweeper@127.0.0.1:<port>/optuna: no password, as lora_lab requires
    password: str  # for PGPASSWORD in the workers' environment
    admin: list[str]  # psql as the superuser, over the local socket

    def fresh_database(self, name: str) -> str:
        """Create database `name` owned by `sweeper`; its URL."""
        subprocess.run([*self.admin, "-c", f"CREATE DATABASE {name} OWNER sweeper"], check=True, capture_output=True)
        return self.url.rsplit("/", 1)[0] + f"/{name}"


@contextlib.contextmanager
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server on 127.0.0.1:<free port>, password auth over TCP, data in a temp dir;
    one role `sweeper` owning one database `optuna`."""
    initdb = require("/usr/lib/postgresql/*/bin/initdb", "postgresql")
    pg_ctl = str(Path(initdb).with_name("pg_ctl"))
    user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    root = Path(tempfile.mkdtemp(prefix="lora_lab_pg_"))  # not pytest's tmp_path: postgres must reach it
    _chown(root, user)
    data, port, password = root / "data", free_port(), "s3cret-" + os.urandom(6).hex()
    run = lambda *cmd: subprocess.run([*_as_user(user), *cmd], check=True, capture_output=True, text=True)  # noqa: E731 - a one-line helper
    # Local socket: trust (the fixture sets up the role); TCP: a password, as a real server asks.
    run(initdb, "-D", str(data), "-U", user, "--auth-local=trust", "--auth-host=scram-sha-256")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "server.log"), "-w", "start")
    try:
        psql = [
            *_as_user(user),
            shutil.which("psql") or "psql",
            "-h",
            str(root),
            "-p",
            str(port),
            "-U",
            user,
            "-v",
            "ON_ERROR_STOP=1",
        ]
        subprocess.run(
            [*psql, "-c", f"CREATE ROLE sweeper LOGIN PASSWORD '{password}'"], check=True, capture_output=True
        )
        server = Postgres(url=f"postgresql://sweeper@127.0.0.1:{port}/optuna", password=password, admin=psql)
        server.fresh_database("optuna")
        yield server
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


@dataclass
class Slurm:
    env: dict[str, str]  # SLURM_CONF: what sbatch, squeue, sacct and submitit's calls need
    root: Path

    def run(self, *cmd: str) -> str:
        return subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, **self.env}).stdout


# One node (this machine, 2 CPUs), one partition. linuxproc/none: no cgroups in a container.
# Finished jobs go to a jobcomp text file (sacct -c reads it); full accounting needs slurmdbd + MySQL.
SLURM_CONF = """\
ClusterName=lora_lab_test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc={root}/jobcomp.txt
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@contextlib.contextmanager
def slurm() -> Iterator[Slurm]:
    """A one-node SLURM cluster on this machine: munged, slurmctld and slurmd in the foreground,
    configs, keys, sockets and state in a temp dir; all stopped afterwards."""
    munged, slurmctld, slurmd = (
        require(b, p) for b, p in (("munged", "munge"), ("slurmctld", "slurm-wlm"), ("slurmd", "slurm-wlm"))
    )
    if os.geteuid() != 0:
        raise RuntimeError("the SLURM fixture starts slurmd, which runs jobs as their users: it needs root")
    root = Path(tempfile.mkdtemp(prefix="lora_lab_slurm_"))
    for sub in ("state", "spool"):
        (root / sub).mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    host = socket.gethostname()
    conf = root / "slurm.conf"
    conf.write_text(SLURM_CONF.format(host=host, root=root, ctld_port=free_port(), d_port=free_port()))
    env = {"SLURM_CONF": str(conf)}
    daemons: list[subprocess.Popen] = []
    try:
        daemons.append(
            subprocess.Popen(
                [
                    munged,
                    "-F",
                    "--force",
                    f"--key-file={key}",
                    f"--socket={root}/munge.socket",
                    f"--pid-file={root}/munged.pid",
                    f"--log-file={root}/munged.log",
                    f"--seed-file={root}/munge.seed",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_for(lambda: (root / "munge.socket").exists(), 30, "munged's socket")
        for daemon in (slurmctld, slurmd):
            daemons.append(
                subprocess.Popen(
                    [daemon, "-D", "-f", str(conf)],
                    env={**os.environ, **env},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        cluster = Slurm(env, root)

        def node_idle() -> bool:
            assert all(d.poll() is None for d in daemons), f"a SLURM daemon died: see {root}/*.log"
            try:
                return cluster.run("sinfo", "-h", "-o", "%t").strip() == "idle"
            except subprocess.CalledProcessError:
                return False

        wait_for(node_idle, 60, "the SLURM node to come up idle")
        yield cluster
    finally:
        for daemon in reversed(daemons):
            daemon.terminate()
            try:
                daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                daemon.kill()
        shutil.rmtree(root, ignore_errors=True)
