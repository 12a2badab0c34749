"""GPU jobs that share one allocation each compute on a card of their own."""

import json
import os
import subprocess
import sys

import pytest

from lorapress.devices import claim_gpu, visible_gpus

CLAIM = ("import json, os, sys, time; from lorapress.devices import claim_gpu; card = claim_gpu(timeout_s=30); "
         "print(json.dumps([card, os.environ.get('CUDA_VISIBLE_DEVICES'), time.time()]), flush=True); "
         "time.sleep(float(sys.argv[1]))")


def start(env, hold):
    return subprocess.Popen([sys.executable, "-c", CLAIM, str(hold)], env=env, stdout=subprocess.PIPE, text=True)


def test_jobs_in_one_allocation_claim_different_cards_and_wait_for_a_free_one(tmp_path):
    """Old: every local job computed on cuda:0 (two engines on one card ran out of memory)."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0,1", "LORAPRESS_GPU_LOCKS": str(tmp_path)}
    first, second = start(env, 3), start(env, 3)
    claims = [json.loads(p.stdout.readline()) for p in (first, second)]  # each has its card (not a sleep: a busy
    third = start(env, 0)  # machine starts Python slowly); both cards are held: it waits for the first to end
    claims.append(json.loads(third.stdout.readline()))
    for p in (first, second, third):
        assert p.wait(timeout=60) == 0
    (card1, env1, t1), (card2, env2, t2), (card3, env3, t3) = claims
    assert {card1, card2} == {"0", "1"} and env1 == card1 and env2 == card2
    assert card3 in ("0", "1") and env3 == card3 and t3 >= min(t1, t2) + 2.5  # after a holder ended


def test_one_visible_card_or_none_is_left_alone(tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": "3", "LORAPRESS_GPU_LOCKS": str(tmp_path)}
    assert claim_gpu(env) == "3" and env["CUDA_VISIBLE_DEVICES"] == "3" and not any(tmp_path.iterdir())
    assert claim_gpu({"CUDA_VISIBLE_DEVICES": "", "LORAPRESS_GPU_LOCKS": str(tmp_path)}) is None
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-aa, GPU-bb"}) == ["GPU-aa", "GPU-bb"]


def test_a_claim_times_out_with_a_clear_message(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0,1", "LORAPRESS_GPU_LOCKS": str(tmp_path)}
    holders = [start(env, 4), start(env, 4)]
    for p in holders:
        p.stdout.readline()  # its card claimed
    with pytest.raises(TimeoutError, match="no free GPU among"):
        claim_gpu(dict(env), poll_s=0.2, timeout_s=0.5)
    for p in holders:
        p.wait(timeout=60)
