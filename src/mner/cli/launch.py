"""Make ``accelerate launch --num_processes N --cpu -m mner train ...`` start N processes.

accelerate's CPU launcher starts one process and leaves the other N - 1 to MPI (``mpirun``),
which this kind of machine does not have (huggingface/accelerate#2741): the script then trains
alone, believing it is one of N. mner notices that situation (accelerate's CPU flag and a
rendezvous address, but no rank from any launcher), reads N from the ``accelerate launch``
command line of its parent process, and starts the N processes itself with
``torch.distributed.run`` (gloo on the CPU), saying so on standard error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

_LAUNCHER_RANK_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes")


def requested_processes(cmdline: Sequence[str]) -> int | None:
    """``N`` of ``--num_processes N`` / ``--num_processes=N`` in an ``accelerate launch`` command."""
    for i, arg in enumerate(cmdline):
        if arg in ("--num_processes", "--num-processes") and i + 1 < len(cmdline):
            value = cmdline[i + 1]
        elif arg.startswith(("--num_processes=", "--num-processes=")):
            value = arg.split("=", 1)[1]
        else:
            continue
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _parent_cmdline() -> list[str]:
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def relaunch_if_needed(argv: Sequence[str]) -> int | None:
    """Start the N processes (and return their exit code) when accelerate started only one;
    None when nothing needs doing."""
    env = os.environ
    if not _flag(env.get("ACCELERATE_USE_CPU")) or "MASTER_ADDR" not in env:
        return None
    if any(var in env for var in _LAUNCHER_RANK_VARS):
        return None
    parent = _parent_cmdline()
    if not any("accelerate" in arg for arg in parent):
        return None
    n = requested_processes(parent)
    if not n or n < 2:
        return None
    print(f"mner: accelerate's CPU launcher started 1 process for --num_processes {n} (it relies on MPI "
          f"for more); mner starts the {n} processes with torch.distributed.run", file=sys.stderr, flush=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}", "--nnodes=1",
           f"--master_addr={env['MASTER_ADDR']}", f"--master_port={env.get('MASTER_PORT', '29500')}",
           "-m", "mner", *argv]
    return subprocess.call(cmd, env=dict(env))
