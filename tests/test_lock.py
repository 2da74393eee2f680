"""The run-folder lock is the kernel's: one holder at a time, released when the holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from textscd_lib.common import lock

HOLD = ("import sys, time; from textscd_lib.common.lock import run_lock\n"
        "with run_lock(sys.argv[1], 'killed holder'):\n"
        "    print('held', flush=True); time.sleep(60)\n")

# each racer reads the lock file slowly, as on a loaded machine: any check-then-act on the file's record
# (is its pid alive? then remove it and create my own) lets several racers act on the same stale record
RACE = ("import pathlib, sys, time; from textscd_lib.common import lock\n"
        "read = lock.read_lock\n"
        "def slow(*args):\n"
        "    h = read(*args); time.sleep(0.3); return h\n"
        "lock.read_lock = slow\n"
        "go = pathlib.Path(sys.argv[2])\n"
        "while not go.exists(): time.sleep(0.001)\n"
        "try:\n"
        "    with lock.run_lock(sys.argv[1], 'racer'):\n"
        "        print('won', flush=True); time.sleep(3)\n"
        "except lock.LockHeld as e:\n"
        "    print('refused', e, flush=True)\n")


def _env():
    return {k: v for k, v in os.environ.items() if k != lock.TOKEN_ENV}


def test_racers_for_a_lock_left_by_a_killed_holder_exactly_one_wins(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env=_env())
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)  # no clean-up runs: the record stays, the kernel lock goes
    holder.wait()
    assert lock.read_lock(tmp_path)["pid"] == holder.pid
    go = tmp_path / "go"
    racers = [subprocess.Popen([sys.executable, "-c", RACE, str(tmp_path), str(go)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=_env()) for _ in range(6)]
    time.sleep(2.0)  # every racer imported and waits on the start file
    go.write_text("go")
    outs = [r.communicate(timeout=60) for r in racers]
    said = [o.split()[0] if o.strip() else f"crashed: {e}" for o, e in outs]
    assert sorted(said) == ["refused"] * 5 + ["won"], said
    assert all("killed holder" not in o for o, _ in outs if o.startswith("refused"))  # they name the winner
    assert not (tmp_path / lock.LOCK_NAME).exists()  # the winner removed it on release


def test_a_lock_file_nobody_holds_is_taken_and_a_held_one_refused_naming_pid_and_command(tmp_path):
    (tmp_path / lock.LOCK_NAME).write_text('{"pid": 1, "command": "gone", "token": "old"}')
    with lock.run_lock(tmp_path, "textscd train --run a") as token:
        assert lock.read_lock(tmp_path)["token"] == token
        code = ("import sys; from textscd_lib.common import lock\n"
                "try:\n    lock.acquire(sys.argv[1], 'second')\nexcept lock.LockHeld as e:\n    print(e)\n")
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                             env=_env()).stdout
        assert f"pid {os.getpid()}" in out and "'textscd train --run a'" in out
    assert lock.read_lock(tmp_path) is None and lock.TOKEN_ENV not in os.environ


def test_a_caption_store_is_written_by_one_captioning_run_at_a_time(tmp_path):
    from textscd_lib.text.store import CaptionStore

    store = CaptionStore(tmp_path / "captions" / "gemini.jsonl")
    code = ("import sys; from textscd_lib.common.lock import LockHeld; from textscd_lib.text.store import CaptionStore\n"
            "try:\n    CaptionStore(sys.argv[1]).exclusive().__enter__()\nexcept LockHeld as e:\n    print(e)\n")
    with store.exclusive():
        out = subprocess.run([sys.executable, "-c", code, str(store.path)], capture_output=True, text=True,
                             env=_env())
        assert f"pid {os.getpid()}" in out.stdout and "captioning into gemini.jsonl" in out.stdout, out.stderr
    assert not list(store.path.parent.glob(".*.lock"))  # released and removed
    free = subprocess.run([sys.executable, "-c", code, str(store.path)], capture_output=True, text=True, env=_env())
    assert free.returncode == 0 and free.stdout == ""
