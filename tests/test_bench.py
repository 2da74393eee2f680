"""`textscd bench` prints every field the performance issue asks for (numbers, not timed assertions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO

FIELDS = {"case", "model", "device", "size", "batch", "precision", "pairs_per_s", "step_ms_median", "params_total"}


def test_bench_cli_prints_train_and_inference_rows_with_flops_memory_and_tgi_overhead(tmp_path):
    cmd = [sys.executable, "-m", "textscd_lib", "bench", "--device", "cpu", "--size", "64", "--batch", "2",
           "--warmup", "1", "--repeats", "2"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO,
                         env={**os.environ, "TEXTSCD_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert not (tmp_path / "results").exists()  # a trial run adds nothing to the benchmark record
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert {(r["case"], r["model"]) for r in rows} == {(c, m) for c in ("train_step", "inference")
                                                       for m in ("baseline", "textscd")}
    for r in rows:
        assert FIELDS <= set(r) and r["pairs_per_s"] > 0 and r["device"].startswith("cpu")
        assert r["precision"] == "fp32" and r["size"] == 64 and r["batch"] == 2
    train = [r for r in rows if r["case"] == "train_step"]
    assert all(r["flops_per_step"] > 1e9 and r["tflops_per_s"] > 0 and r["peak_memory_mb"] > 0 for r in train)
    textscd = {r["case"]: r for r in rows if r["model"] == "textscd"}
    assert "tgi_overhead_pct" in textscd["train_step"] and "tgi_overhead_pct" in textscd["inference"]
    # TGI adds parameters (projection, attention, norms) on top of the same Baseline
    base = {r["case"]: r for r in rows if r["model"] == "baseline"}
    assert textscd["train_step"]["params_total"] > base["train_step"]["params_total"]


def test_bench_rejects_an_unknown_model():
    out = subprocess.run([sys.executable, "-m", "textscd_lib", "bench", "--models", "bisrnet", "--no-write"],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 2 and "unknown model(s) ['bisrnet']" in out.stderr


def test_bench_rejects_a_size_the_encoder_cannot_take_and_a_missing_dataset_before_timing():
    for args, message in ((["--size", "48"], "--size 48: use a multiple of 32"),
                          (["--data", "/nonexistent/mini"], "--data /nonexistent/mini: no such dataset folder")):
        out = subprocess.run([sys.executable, "-m", "textscd_lib", "bench", "--device", "cpu", "--no-write", *args],
                             capture_output=True, text=True, timeout=120, cwd=REPO)
        assert out.returncode == 2 and message in out.stderr, out.stderr[-500:]


def test_bench_records_each_fast_path_switch_and_times_the_trainer_fed_step():
    cmd = [sys.executable, "-m", "textscd_lib", "bench", "--device", "cpu", "--size", "64", "--batch", "2",
           "--warmup", "1", "--repeats", "1", "--no-write", "--models", "textscd", "--tail", "narrow",
           "--pipeline", "--host-syncs", "--mask-once", "off", "--fast-cosine"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert {r["case"] for r in rows} == {"train_step", "train_step_pipeline", "inference"}
    for r in rows:
        assert (r["tail"], r["mask_once"], r["host_syncs"], r["fast_cosine"]) == ("narrow", False, True, True)
        assert r["cudnn_benchmark"] is False  # a CUDA switch: off on the CPU whatever was asked
        assert r["pairs_per_s"] > 0


def test_bench_refuses_compile_and_cuda_graphs_on_the_cpu_and_an_unknown_tail():
    for args, message in ((["--compile"], "--compile is timed on CUDA only"),
                          (["--cuda-graphs"], "--cuda-graphs needs a CUDA device"),
                          (["--tail", "wide"], "--tail 'wide': choose from paper, narrow, stride4")):
        out = subprocess.run([sys.executable, "-m", "textscd_lib", "bench", "--device", "cpu", "--no-write", *args],
                             capture_output=True, text=True, timeout=120, cwd=REPO)
        assert out.returncode == 2 and message in out.stderr, out.stderr[-500:]


def test_bench_appends_to_the_benchmark_record_only_when_asked_with_record(tmp_path):
    cmd = [sys.executable, "-m", "textscd_lib", "bench", "--cost", "--size", "64", "--batch", "1", "--models",
           "baseline"]
    env = {**os.environ, "TEXTSCD_HOME": str(tmp_path)}
    record = tmp_path / "results/benchmarks/cost-model.jsonl"
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    assert out.returncode == 0 and not record.exists(), out.stderr[-500:]
    out = subprocess.run([*cmd, "--record"], capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    assert out.returncode == 0, out.stderr[-500:]
    printed = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [json.loads(line) for line in record.read_text().splitlines()] == printed
    helptext = subprocess.run([sys.executable, "-m", "textscd_lib", "bench", "--help"], capture_output=True,
                              text=True, timeout=60, cwd=REPO).stdout
    assert "Nothing is written unless --record" in " ".join(helptext.split())
