"""A single-node SLURM cluster for the tests: munged, slurmctld and slurmd in a temporary folder, no cgroups, no accounting.

Used by the ``slurm_cluster`` fixture (tests/conftest.py).  Needs Debian's
``slurmctld slurmd slurm-client munge`` (Slurm 22.05) and root (the daemons
run as root, ``SlurmUser=root``); ports 16817/16818 stay clear of a
system cluster's defaults.  ``SLURM_CONF`` is exported to the daemons and
to the process that submits.
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo", "srun")
PORTS = (16817, 16818)


def missing():
    """Why a cluster cannot start here, or None."""
    absent = [b for b in BINARIES if shutil.which(b) is None]
    if absent:
        return (f"no {', '.join(absent)}: apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge "
                "(what .ci/run does)")
    if os.geteuid() != 0:
        return "the test cluster's daemons run as root (SlurmUser=root); run the tests as root"
    for port in PORTS:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return f"port {port} is taken (another test cluster?)"
    return None


def configuration(folder, host, node_line):
    return f"""ClusterName=jtlntest
SlurmctldHost={host}
SlurmctldPort={PORTS[0]}
SlurmdPort={PORTS[1]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={folder}/munge/munge.socket,cred_expire=5
CredType=cred/munge
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
SchedulerParameters=sched_interval=1
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=600
KillWait=5
{node_line} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


class Cluster:
    """Start with :meth:`start`, stop with :meth:`stop` (by the daemons' pid files)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.conf = self.folder / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *args, timeout=30, check=True):
        return subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout, check=check)

    def start(self, timeout=60):
        f = self.folder
        for sub in ("state", "spool", "munge"):
            (f / sub).mkdir(parents=True, exist_ok=True)
        (f / "munge").chmod(0o700)
        key = f / "munge" / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        self.run("munged", "--force", f"--key-file={key}", f"--socket={f}/munge/munge.socket", f"--pid-file={f}/munge/munged.pid",
                 f"--log-file={f}/munge/munged.log", f"--seed-file={f}/munge/munged.seed")
        node = self.run("slurmd", "-C").stdout.splitlines()[0]
        self.conf.write_text(configuration(f, socket.gethostname(), node))
        self.run("slurmctld")
        self.run("slurmd")
        deadline = time.time() + timeout
        while time.time() < deadline:
            state = self.run("sinfo", "-h", "-o", "%t", check=False).stdout.strip()
            if state == "idle" and self.run("srun", "true", check=False, timeout=20).returncode == 0:
                return self
            time.sleep(0.5)
        raise RuntimeError(f"the test cluster did not come up in {timeout} s; logs in {f}")

    def stop(self, timeout=10):
        """SIGTERM to slurmd and slurmctld at once, then SIGKILL to munged (which they authenticate through while they
        stop; it keeps no state, and its SIGTERM takes 2 s), waiting up to ``timeout`` s for each stage to exit."""
        for stage, how in ((("slurmd.pid", "slurmctld.pid"), signal.SIGTERM), (("munge/munged.pid",), signal.SIGKILL)):
            stopping = []
            for pid_file in stage:
                try:
                    pid = int((self.folder / pid_file).read_text().strip())
                    os.kill(pid, how)
                    stopping.append(pid)
                except (OSError, ValueError):
                    pass
            deadline = time.time() + timeout
            for pid in stopping:
                try:
                    while time.time() < deadline:
                        os.kill(pid, 0)
                        time.sleep(0.1)
                except OSError:
                    pass
