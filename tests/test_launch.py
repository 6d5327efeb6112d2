"""The shim that makes ``accelerate launch --num_processes N --cpu -m mner train`` start N processes
(the end-to-end run is in test_training.py)."""

from __future__ import annotations

from mner.cli import launch


def test_requested_processes_reads_both_spellings():
    assert launch.requested_processes(["accelerate", "launch", "--num_processes", "3", "--cpu"]) == 3
    assert launch.requested_processes(["x", "launch", "--num_processes=2", "-m", "mner"]) == 2
    assert launch.requested_processes(["accelerate", "launch", "--cpu"]) is None
    assert launch.requested_processes(["accelerate", "launch", "--num_processes", "two"]) is None


def test_nothing_to_do_outside_accelerates_cpu_launcher(monkeypatch):
    calls = []
    monkeypatch.setattr(launch.subprocess, "call", lambda *a, **k: calls.append(a) or 0)
    monkeypatch.setattr(launch, "_parent_cmdline", lambda: ["accelerate", "launch", "--num_processes", "2", "--cpu"])
    for var in ("ACCELERATE_USE_CPU", "MASTER_ADDR", "RANK", "WORLD_SIZE", "LOCAL_RANK", "PMI_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert launch.relaunch_if_needed(["train", "c.yaml"]) is None          # not under accelerate
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("RANK", "0")
    assert launch.relaunch_if_needed(["train", "c.yaml"]) is None          # a launcher gave ranks
    monkeypatch.delenv("RANK")
    assert launch.relaunch_if_needed(["train", "c.yaml"]) == 0             # the case to fix
    (cmd,) = calls[0]
    assert "torch.distributed.run" in cmd and "--nproc_per_node=2" in cmd and cmd[-2:] == ["train", "c.yaml"]
