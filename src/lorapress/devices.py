"""Which GPU a job computes on when several jobs share one machine's GPUs.

Through the SLURM profile every GPU job gets its own allocation and sees exactly one card
(`--gpus=1` sets CUDA_VISIBLE_DEVICES to it): nothing to choose. Inside one allocation with
several cards (`srun snakemake --cores N --resources gpu=K`, see the README) or on a
workstation with several GPUs, Snakemake starts up to K GPU jobs side by side, and each
would otherwise compute on the first visible card: two engines, or training beside an
engine, on one GPU run out of memory. So each job claims one card before anything touches
CUDA: an exclusive lock per card in a directory shared by the jobs of one machine, held for
the life of the job's process (the kernel drops it when the process ends, killed or not),
and CUDA_VISIBLE_DEVICES narrowed to that card. Snakemake's `gpu` resource limit keeps the
number of GPU jobs at the number of cards; a job that finds every card taken waits.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import socket
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)

_HELD: list = []  # open lock files: a claim lasts as long as the process


def visible_gpus(env=None) -> list[str]:
    """The cards this process may use: CUDA_VISIBLE_DEVICES when set (indices or UUIDs), else every card
    nvidia-smi lists; none without either."""
    env = os.environ if env is None else env
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        return [d.strip() for d in value.split(",") if d.strip() and d.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def lock_dir(env=None) -> Path:
    """One directory of card locks per machine (and user): the jobs that share the cards share it."""
    env = os.environ if env is None else env
    root = env.get("LORAPRESS_GPU_LOCKS") or f"/tmp/lorapress-gpus-{os.getuid()}"
    return Path(root) / socket.gethostname()


def claim_gpu(env=None, *, poll_s: float = 2.0, timeout_s: float | None = None) -> str | None:
    """Narrow CUDA_VISIBLE_DEVICES to one free card and hold it; returns that card (None: no GPU here).
    With one visible card there is nothing to share and nothing is locked."""
    env = os.environ if env is None else env
    cards = visible_gpus(env)
    if len(cards) <= 1:
        return cards[0] if cards else None
    folder = lock_dir(env)
    folder.mkdir(parents=True, exist_ok=True)
    started, warned = time.monotonic(), False
    while True:
        for card in cards:
            handle = open(folder / f"gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', card)}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            _HELD.append(handle)
            env["CUDA_VISIBLE_DEVICES"] = card
            log.info("computing on GPU %s of %s (the others are held by other jobs or free)", card, ",".join(cards))
            return card
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            raise TimeoutError(f"no free GPU among {cards} after {timeout_s:.0f} s (locks in {folder})")
        if not warned:
            log.warning("every GPU of %s is taken by another job; waiting (run Snakemake with --resources gpu=%d "
                        "so it starts no more GPU jobs than there are cards)", ",".join(cards), len(cards))
            warned = True
        time.sleep(poll_s)
