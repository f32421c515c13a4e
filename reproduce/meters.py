"""What the rehearsal measures of each phase: wall time, peak host and CUDA memory, and the GPU's utilisation.

:class:`Metered` times a block; :class:`Utilisation` samples ``nvidia-smi``
while runs train; :func:`process_age_s` is a command's start.
"""

import os
import re
import subprocess
import threading
import time
from pathlib import Path


class Utilisation(threading.Thread):
    """Samples ``nvidia-smi``'s GPU utilisation every ``every`` seconds while it runs (nothing where there is no nvidia-smi)."""

    def __init__(self, every=0.5):
        super().__init__(daemon=True)
        self.every, self.samples, self.running = every, [], True

    def run(self):
        while self.running:
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=10).stdout
                self.samples.append(float(out.split()[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return
            time.sleep(self.every)

    def stop(self):
        self.running = False
        return self.samples


class Metered:
    """Times a phase of the rehearsal and its peak host memory (``VmHWM``, reset at the start) and CUDA memory."""

    def __init__(self, name, device):
        self.name, self.cuda = name, str(device).startswith("cuda")

    def __enter__(self):
        import torch

        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets the resident set's high-water mark (Linux)
        except OSError:
            pass
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
        self.figures = {"phase": self.name, "wall_s": round(time.perf_counter() - self.started, 2),
                        "peak_host_gb": _peak_host_gb(),
                        "peak_device_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if self.cuda else None}
        return False


def _peak_host_gb():
    try:
        return round(int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1e6, 2)
    except (OSError, AttributeError):
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)  # the process's peak so far


def process_age_s():
    """Seconds since this process started (Linux's ``/proc``; 0 elsewhere): the interpreter's start, the imports, the profile."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        return max(0.0, float(Path("/proc/uptime").read_text().split()[0]) - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0
