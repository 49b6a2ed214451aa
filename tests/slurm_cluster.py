"""A real one-node SLURM cluster on this machine, for the SLURM tests of ``critkl sweep``.

Debian's ``munge``, ``slurmctld``, ``slurmd`` and ``slurm-client`` packages are installed when missing
(apt-get, as root), a ``slurm.conf`` for this machine alone is written under :data:`STATE` (one node, as
``slurmd -C`` describes it; partition ``cpu``; process tracking without cgroups, which containers and
small VMs often lack; accounting off, as on many small clusters), and munged, slurmctld and slurmd are
started by hand (no systemd needed). It takes seconds and is idempotent: a cluster already answering is
reused, and the daemons are left running afterwards. Clients find it through ``SLURM_CONF=``:data:`CONF`.

From a shell (as root), to try ``critkl sweep --executor slurm`` by hand::

    eval "$(.venv/bin/python tests/slurm_cluster.py)"   # exports SLURM_CONF
    sinfo
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

STATE = Path("/var/lib/critkl-slurm")  # slurm.conf, state, spool, pid and log files; not in the repository
CONF = STATE / "slurm.conf"
PARTITION = "cpu"
PACKAGES = {"munged": "munge", "slurmctld": "slurmctld", "slurmd": "slurmd", "sbatch": "slurm-client"}
MUNGE_SOCKET_DIR = Path("/run/munge")


class Unavailable(RuntimeError):
    """No cluster can be started here: not root, or no apt-get to install the packages."""


def ensure_cluster(timeout_s: float = 60) -> Path:
    """The ``SLURM_CONF`` of a running one-node cluster: the one already up, else a new one."""
    if _node_state() in ("idle", "mixed", "allocated"):
        return CONF
    if os.geteuid() != 0:
        raise Unavailable("not root: cannot install or start munged, slurmctld and slurmd")
    _install()
    _start_munged()
    _write_conf()
    env = {**os.environ, "SLURM_CONF": str(CONF)}
    for daemon in ("slurmctld", "slurmd"):
        if not _running(STATE / f"{daemon}.pid"):
            subprocess.run([daemon], env=env, check=True, capture_output=True, text=True)  # forks into the background
    _wait_for_node(timeout_s)
    return CONF


def _install() -> None:
    """apt-get install the packages whose programs are missing (apt-get update first: a fresh machine has no lists)."""
    missing = sorted({pkg for program, pkg in PACKAGES.items() if not shutil.which(program)})
    if not missing:
        return
    if not shutil.which("apt-get"):
        raise Unavailable(f"no apt-get to install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        if done.returncode:
            raise Unavailable(f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def _start_munged() -> None:
    """munged as the munge user (it refuses to share its key with root), unless one already answers."""
    if subprocess.run(["munge", "-n"], capture_output=True).returncode == 0:
        return
    MUNGE_SOCKET_DIR.mkdir(parents=True, exist_ok=True)  # /run is empty after a reboot
    shutil.chown(MUNGE_SOCKET_DIR, "munge", "munge")
    key = Path("/etc/munge/munge.key")
    if not key.exists():  # the package makes one; a stripped image may not have it
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True)
        shutil.chown(key, "munge", "munge")
    subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True, capture_output=True, text=True)


def _write_conf() -> None:
    """One node, this machine as ``slurmd -C`` sees it (slurmd drains a node that claims more than it has)."""
    for sub in ("ctld", "slurmd"):
        (STATE / sub).mkdir(parents=True, exist_ok=True)
    node = subprocess.run(["slurmd", "-C"], check=True, capture_output=True, text=True).stdout.splitlines()[0]
    host = socket.gethostname().split(".")[0]
    CONF.write_text(f"""\
# A one-node cluster for critkl's tests (tests/slurm_cluster.py): this machine alone.
ClusterName=critkl
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation={STATE}/ctld
SlurmdSpoolDir={STATE}/slurmd
SlurmctldPidFile={STATE}/slurmctld.pid
SlurmdPidFile={STATE}/slurmd.pid
SlurmctldLogFile={STATE}/slurmctld.log
SlurmdLogFile={STATE}/slurmd.log
# no cgroups: containers and small VMs often have none to give
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
# one core per job, so jobs share the node; memory is not counted
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# accounting off, as on many small clusters: sacct fails
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
# a job over its time limit gets SIGTERM, then SIGKILL 5 s later (not 30): the time-out test stays short
KillWait=5
{node} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")


def _running(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text().split()[0]), 0)
        return True
    except (OSError, ValueError, IndexError):
        return False


def _node_state() -> str:
    """State of the partition's node as sinfo prints it ('idle'; 'idle*' when slurmd does not answer; 'down',
    'drained', ...), '' when no controller answers."""
    if not CONF.exists() or not shutil.which("sinfo"):
        return ""
    done = subprocess.run(["sinfo", "--noheader", "--partition", PARTITION, "--format", "%T"],
                          env={**os.environ, "SLURM_CONF": str(CONF)}, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def _wait_for_node(timeout_s: float) -> None:
    """Until the node takes jobs; a node drained or down from an earlier run is resumed once."""
    deadline, resumed, state = time.monotonic() + timeout_s, False, ""
    while time.monotonic() < deadline:
        state = _node_state()
        if state in ("idle", "mixed", "allocated"):
            return
        if state.rstrip("*") in ("drained", "draining", "down") and _running(STATE / "slurmd.pid") and not resumed:
            subprocess.run(["scontrol", "update", f"NodeName={socket.gethostname().split('.')[0]}",
                            "State=RESUME"], env={**os.environ, "SLURM_CONF": str(CONF)}, capture_output=True)
            resumed = True
        time.sleep(0.5)
    logs = "".join(f"\n--- {p}\n" + "\n".join(p.read_text().splitlines()[-15:])
                   for p in (STATE / "slurmctld.log", STATE / "slurmd.log") if p.exists())
    raise RuntimeError(f"SLURM node not up after {timeout_s:g} s (state {state!r}){logs}")


if __name__ == "__main__":
    print(f"export SLURM_CONF={ensure_cluster()}")
