"""The benchmark of `textscd errors` (``python -m textscd_lib.analysis.simulate``) at a tiny size: it times the
command in a child process, prints wall, CPU seconds and peak memory, and appends one JSON line to the committed
record only with --record (under the working folder; here a temporary one)."""

from __future__ import annotations

import json

from textscd_lib.analysis.simulate import RECORD, main


def test_benchmark_prints_wall_cpu_and_peak_memory_and_records_only_when_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TEXTSCD_HOME", str(tmp_path))
    args = ["--pairs", "3", "--size", "32", "--unique", "2", "--workers", "1", "--binary"]
    assert main([*args, "--keep", str(tmp_path / "plain")]) == 0
    printed = capsys.readouterr().out
    assert "wall" in printed and "CPU" in printed and "peak memory" in printed
    assert not (tmp_path / RECORD).exists()                               # printed only
    assert main([*args, "--keep", str(tmp_path / "recorded"), "--record", "--note", "tiny"]) == 0
    lines = (tmp_path / RECORD).read_text().splitlines()
    row = json.loads(lines[0])
    assert len(lines) == 1 and row["pairs"] == 3 and row["note"] == "tiny" and "binary" in row["what"]
    assert row["seconds"] > 0 and row["cpu_seconds"] > 0 and row["peak_rss_mb"] > 0 and row["components"] > 0
