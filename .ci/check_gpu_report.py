"""Checks what .ci/gpu_check.sh left in its folder: the tests and the rehearsal ended well, and the figures hold every phase.

python .ci/check_gpu_report.py OUT MODE   (exit 1 with the reasons otherwise; CI runs it after the dry run)
"""

import json
import sys
from pathlib import Path


def problems(out, mode):
    out, found = Path(out), []
    log = (out / f"gpu_check_{mode}.log").read_text()
    for line in (["gpu_check: tests exit 0"] if mode != "bf16" else []) + ["gpu_check: rehearsal exit 0", "rehearsal of profile paper"]:
        if line not in log:
            found.append(f"the log lacks {line!r}")
    figures = json.loads((out / f"rehearsal_{mode}.json").read_text())
    if not figures.get("complete"):
        found.append("the figures are not complete")
    names = [p["phase"] for p in figures["phases"]]
    from jtln.methods import METHODS
    from reproduce.profile import load_profile

    profile = load_profile("paper")
    trained = [m for m in profile.run.methods if METHODS[m].trains]
    wanted = ["stand-in images", "checks", *(f"prepare {g}" for g in profile.data.groups), "warm-up (every method, not counted)",
              *(f"train {g} {m}" for g in profile.data.groups for m in trained)]
    found += [f"no phase {name!r}" for name in wanted if name not in names]
    if "projection" not in figures:
        found.append("no projection entry")
    return found


if __name__ == "__main__":
    found = problems(*sys.argv[1:3])
    print("\n".join(found) or f"the GPU check's {sys.argv[2]} report is whole")
    sys.exit(1 if found else 0)
