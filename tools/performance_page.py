"""Fill the generated blocks of ``docs/performance.md`` from the committed benchmark records.

Markdown never carries a number a run measured: every measured number on the performance page sits between
``<!-- generated: NAME (tools/performance_page.py) -->`` and ``<!-- end generated: NAME -->`` and is printed here
from a file under ``results/`` that each block names; every verdict against a target is computed here by a rule
the block states. The prose around the blocks is hand-written and carries no measured number
(``tests/test_performance_page.py`` checks both).

    python tools/performance_page.py            # rewrite the blocks of docs/performance.md in place
    python tools/performance_page.py --check    # exit 1 and print the difference when a block is stale
"""
from __future__ import annotations

import argparse
import difflib
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from textscd_lib.analysis.ablation import seed_noise  # noqa: E402
from textscd_lib.common.io import atomic_write_text  # noqa: E402

PAGE = ROOT / "docs" / "performance.md"
GPU_BENCH = "benchmarks/nvidia-h100-80gb-hbm3.jsonl"
CPU_BENCH = "benchmarks/cpu-x86-64-2threads.jsonl"
COST = "benchmarks/cost-model.jsonl"
MARK = re.compile(r"^<!-- generated: ([\w-]+) \(tools/performance_page\.py\) -->$")
END = "<!-- end generated: {} -->"
MODELS = ("baseline", "textscd")
NAMES = {"baseline": "Baseline", "textscd": "TextSCD"}
# The GPU targets the fast path was built against (ours, not the paper's): value, and whether higher is better.
GPU_TARGETS = {"train": (500, True), "tgi": (10, False), "inference": (1500, True), "second_min": (5, False)}
SECOND_TRAIN, SECOND_EPOCHS = 2375, 50   # SECOND's labelled train split and the lineage's epochs (docs/facts.md)
CPU_TARGETS_S = {"fast": 180, "demo": 1200, "test": 600}   # textscd run --fast, make demo, make test
TAILS = ("paper", "narrow", "stride4")   # textscd_lib.models.textscd.TAILS (not imported: it needs torch)
PART_LABELS = {"encoder": "encoder, ResNet34 × 2 dates (3–4)", "fuse": "fuse, bitemporal MLP (6)",
               "tgi": "TGI × 3 levels (7)", "sem_in": "semantic input convs", "glue": "glue (concatenations, slicing)",
               "sem_decoder": "semantic decoder, 2 dates (8)", "change_decoder": "change decoder (8)",
               "heads": "3×3 classifiers", "loss": "loss, eq. (9)–(12) + CE", "optimizer": "optimizer (SGD)"}


def _rows(path: Path) -> list[dict]:
    """The JSON lines of a benchmark record (blank lines skipped)."""
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _src(results: Path, rel: str) -> str:
    return f"`results/{rel}`"


def _minutes(seconds: float) -> str:
    """``13 min 04 s``, or ``59 s`` under a minute."""
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60:02d} s" if whole >= 60 else f"{whole} s"


def verdict(value: float, target: float, higher_is_better: bool) -> str:
    """``met`` or ``**not met**``: the page's rule is that the measured value reaches the target (at least the
    target for a rate, at most the target for a time or an overhead)."""
    met = value >= target if higher_is_better else value <= target
    return "met" if met else "**not met**"


def _latest(rows: list[dict]) -> list[dict]:
    """The rows of the latest run in a record (the rows sharing the last ``time``)."""
    last = max(r["time"] for r in rows)
    return [r for r in rows if r["time"] == last]


def _default_path(row: dict) -> bool:
    """A bench row measured with the fast path's defaults (no switch that puts an old path back)."""
    return (row.get("tail", "paper") == "paper" and not row.get("host_syncs") and not row.get("cuda_graphs")
            and not row.get("compile") and not row.get("fast_cosine") and row.get("cudnn_benchmark", True)
            and row.get("mask_once", "off") in ("off", False))


def gpu_bench(results: Path) -> dict[tuple[str, str], dict]:
    """``{(case, model): row}`` of the latest default-path GPU run at 512², batch 8."""
    rows = [r for r in _rows(results / GPU_BENCH) if r.get("case") in ("train_step", "inference")
            and r.get("size") == 512 and r.get("batch") == 8 and _default_path(r)]
    return {(r["case"], r["model"]): r for r in _latest(rows)}


def trainer_epochs(results: Path, model: str) -> tuple[list[dict], dict]:
    """(per-epoch history, whole log) of chapter 05's GPU run of ``model`` (``results/gpu/metrics``)."""
    log = _json(results / "gpu" / "metrics" / f"train_{model}.json")
    return log["history"], log


def train_pairs(history: list[dict]) -> int:
    """The run's train pairs per epoch (its log records rate and seconds, not the count)."""
    return round(sum(h["pairs_per_s"] * h["train_seconds"] for h in history) / len(history))


def second_projection(history: list[dict]) -> tuple[float, float]:
    """Minutes for SECOND-sized training (``SECOND_TRAIN`` pairs × ``SECOND_EPOCHS`` epochs with validation),
    projected from the run's mean epoch (train + val seconds) scaled by SECOND's train pairs over the run's;
    val scales alike, both splits being 4:1. (without epoch 1, with it): epoch 1 carries the start-up."""
    pairs = train_pairs(history)

    def minutes(hs: list[dict]) -> float:
        epoch = sum(h["train_seconds"] + h["val_seconds"] for h in hs) / len(hs)
        return epoch * SECOND_TRAIN / pairs * SECOND_EPOCHS / 60
    return minutes(history[1:] or history), minutes(history)


def gpu_step_block(results: Path) -> list[str]:
    """The lent H100's step rates, memory and trainer run against the GPU targets."""
    b = gpu_bench(results)
    head = b[("train_step", "baseline")]
    tr, te = (b[("train_step", m)] for m in MODELS)
    inf = [b[("inference", m)] for m in MODELS]
    t = GPU_TARGETS
    lines = [f"{head['device']}, {head['time'][:10]}: torch {head['torch']}, {head['size']}², batch {head['batch']}, "
             f"{head['precision']} autocast, channels_last {'on' if head['channels_last'] else 'off'}, eager, cached "
             f"text features; {_src(results, GPU_BENCH)} and `results/gpu/metrics/`.", "",
             "| | Baseline | TextSCD | target | verdict |", "|---|---|---|---|---|",
             f"| train step (incl. backward + SGD), pairs/s | {tr['pairs_per_s']:.1f} | {te['pairs_per_s']:.1f} | "
             f"≥ {t['train'][0]:,} | {verdict(min(tr['pairs_per_s'], te['pairs_per_s']), *t['train'])} |",
             f"| TGI overhead over Baseline, train step | – | {te['tgi_overhead_pct']:+.1f} % | ≤ {t['tgi'][0]} % | "
             f"{verdict(te['tgi_overhead_pct'], *t['tgi'])} |",
             f"| inference, pairs/s | {inf[0]['pairs_per_s']:.0f} | {inf[1]['pairs_per_s']:.0f} | ≥ {t['inference'][0]:,} | "
             f"{verdict(min(r['pairs_per_s'] for r in inf), *t['inference'])} |",
             "| FLOPs per step / achieved | " + " | ".join(
                 f"{r['flops_per_step'] / 1e12:.2f} TFLOP / {r['tflops_per_s']:.1f} TFLOP/s" for r in (tr, te)) + " | | |",
             "| peak GPU memory | " + " | ".join(f"{r['peak_memory_mb'] / 1024:.1f} GiB" for r in (tr, te)) + " | | |"]
    return lines + trainer_rows(results)


def trainer_rows(results: Path) -> list[str]:
    """Chapter 05's trainer on the GPU, and the SECOND-sized run projected from it."""
    cells, proj = [], []
    for m in MODELS:
        history, log = trainer_epochs(results, m)
        rates = [h["pairs_per_s"] for h in history[1:] or history]
        cells.append(f"{min(rates):.0f}–{max(rates):.0f} pairs/s, {log['seconds']:.1f} s")
        proj.append(second_projection(history))
    n = len(history)
    worst = max(p[0] for p in proj)
    target = GPU_TARGETS["second_min"]
    return [f"| trainer, chapter 05 ({train_pairs(history)} train pairs of {_json(results / 'gpu' / 'run.json')['parameters']['SIZE']}², {n} epochs incl. "
            f"validation): pairs/s over epochs 2–{n}, wall | "
            + " | ".join(cells) + " | | |",
            f"| SECOND-sized run, {SECOND_TRAIN:,} pairs × {SECOND_EPOCHS} epochs with validation (projected†) | "
            + " | ".join(f"{lo:.1f}–{hi:.1f} min" for lo, hi in proj)
            + f" | ≤ {target[0]} min | {verdict(worst, *target)} (projected) |", "",
            "Rule: a target is met when every model's measured value reaches it (TGI's overhead: TextSCD's); "
            "the projection is judged by its lower value.", "",
            "† Not run: each model's mean epoch (train + validation seconds) in `results/gpu/metrics/train_*.json`, "
            f"scaled by {SECOND_TRAIN:,} over the run's train pairs (validation alike: both splits are 4:1) and by "
            f"{SECOND_EPOCHS} epochs; the lower value leaves out epoch 1 (start-up), the higher includes it."]


def _cost_rows(results: Path, model: str, tail: str = "paper") -> dict[str, dict]:
    """``{part: row}`` of the latest cost-model run of ``model`` with ``tail`` at 512², batch 8, bf16, H100 SXM
    (rows written before the tail option existed have no ``tail``: the paper's, the only tail then)."""
    rows = [r for r in _rows(results / COST) if r["model"] == model and r.get("tail", "paper") == tail
            and r["size"] == 512 and r["batch"] == 8 and r["precision"] == "bf16" and r["profile"] == "h100-sxm"]
    return {r["part"]: r for r in _latest(rows)} if rows else {}


def _peaks(profile_name: str) -> tuple[float, float] | None:
    """(TFLOP/s, TB/s) named in a cost row's ``profile_name`` (the datasheet figures the bound used)."""
    found = re.search(r"([\d.]+) TFLOP/s.*?([\d.]+) TB/s", profile_name)
    return (float(found.group(1)), float(found.group(2))) if found else None


def cost_block(results: Path) -> list[str]:
    """The cost model's parts of TextSCD's step, both models' totals, and what they say beside the H100's step."""
    text, base = _cost_rows(results, "textscd"), _cost_rows(results, "baseline")
    tot = text["total"]
    lines = [f"{_src(results, COST)}, {tot['time'][:10]}: {tot['size']}², batch {tot['batch']}, {tot['precision']}, "
             f"bound on {tot['profile_name']}.", "",
             "| part (eq.) | forward GFLOP / GB | backward GFLOP / GB | ops | bound, ms (share) |", "|---|---|---|---|---|"]
    for part, r in text.items():
        if part != "total":
            lines.append(f"| {PART_LABELS.get(part, part)} | {r['fwd_gflop']:,.0f} / {r['fwd_gb']:.2f} | "
                         f"{r['bwd_gflop']:,.0f} / {r['bwd_gb']:.2f} | {r['ops']} | {r['bound_ms']:.2f} "
                         f"({r['share_pct']:.0f} %) |")
    for name, r in (("TextSCD", tot), ("Baseline", base["total"])):
        lines.append(f"| **{name} step** | {r['fwd_gflop']:,.0f} / {r['fwd_gb']:.1f} | {r['bwd_gflop']:,.0f} / "
                     f"{r['bwd_gb']:.1f} | {r['ops']} | **{r['bound_ms']:.1f} → at best "
                     f"{r['bound_pairs_per_s']:.0f} pairs/s** |")
    return lines + [""] + cost_vs_measured(results, text, base)


def cost_vs_measured(results: Path, text: dict[str, dict], base: dict[str, dict]) -> list[str]:
    """The bound beside the H100's measured step: the share reached, what the train target needs, bytes against
    FLOPs, TGI's measured overhead per operation, and the decoders' share."""
    b = gpu_bench(results)
    ms = {m: b[("train_step", m)]["step_ms_median"] for m in MODELS}
    bound = {"baseline": base["total"]["bound_ms"], "textscd": text["total"]["bound_ms"]}
    target = GPU_TARGETS["train"][0]
    tot, tgi = text["total"], text["tgi"]
    lines = ["- Measured on the H100 (" + _src(results, GPU_BENCH) + "): " + "; ".join(
        f"{NAMES[m]} {ms[m]:.1f} ms per step, {100 * bound[m] / ms[m]:.0f} % of its bound" for m in MODELS)
        + f". The {target} pairs/s target needs {100 * target / tot['bound_pairs_per_s']:.0f} % of TextSCD's bound."]
    peaks = _peaks(tot["profile_name"])
    if peaks:
        gb, tflop = tot["fwd_gb"] + tot["bwd_gb"], (tot["fwd_gflop"] + tot["bwd_gflop"]) / 1e3
        byte_ms, flop_ms = gb / peaks[1], 1e3 * tflop / peaks[0]
        lines.append(f"- TextSCD's step moves {gb:.1f} GB against {tflop:.2f} TFLOP: at the datasheet's figures the "
                     f"bytes alone take {byte_ms:.1f} ms, the FLOPs {flop_ms:.1f} ms, so the step is "
                     + ("memory-bound." if byte_ms > flop_ms else "compute-bound."))
    extra = ms["textscd"] - ms["baseline"]
    lines.append(f"- TGI: bound {tgi['bound_ms']:.2f} ms, measured {extra:+.1f} ms over Baseline's step "
                 f"({extra / tgi['bound_ms']:.0f} × its bound), over {tgi['ops']} operations: "
                 f"{1e3 * extra / tgi['ops']:.0f} µs per operation.")
    tail = sum(text[p]["share_pct"] for p in ("sem_decoder", "change_decoder", "heads", "loss") if p in text)
    return lines + [f"- The decoders, classifiers and loss are {tail:.0f} % of TextSCD's bound."]


def cost_tails_block(results: Path) -> list[str]:
    """TextSCD's cost-model bound for every decoder tail the record holds, and the tails it does not."""
    found = {t: _cost_rows(results, "textscd", t) for t in TAILS}
    lines = [f"{_src(results, COST)}, TextSCD, 512², batch 8, bf16, H100 SXM bound:", "",
             "| tail | GFLOP (fwd + bwd) | GB moved | bound, ms | at best, pairs/s | decoders + classifiers, ms |",
             "|---|---|---|---|---|---|"]
    for tail, rows in found.items():
        if rows:
            t = rows["total"]
            dec = sum(rows[p]["bound_ms"] for p in ("sem_decoder", "change_decoder", "heads") if p in rows)
            lines.append(f"| {tail} | {t['fwd_gflop'] + t['bwd_gflop']:,.0f} | {t['fwd_gb'] + t['bwd_gb']:.1f} | "
                         f"{t['bound_ms']:.2f} | {t['bound_pairs_per_s']:.0f} | {dec:.2f} |")
    missing = [t for t in TAILS if not found[t]]
    if missing:
        lines += ["", "No record yet for " + ", ".join(f"`{t}`" for t in missing) + ": `textscd bench --cost --models "
                  "textscd --tail TAIL --record` appends one (seconds, any machine), and this table then shows it."]
    return lines


def part_rows(results: Path, model: str = "textscd") -> dict[tuple[int, int], dict[str, dict]]:
    """``{(size, batch): {part: row}}`` of the latest ``part_time`` rows per setting of ``model`` on the CPU."""
    rows = [r for r in _rows(results / CPU_BENCH) if r.get("case") == "part_time" and r["model"] == model]
    out: dict[tuple[int, int], dict[str, dict]] = {}
    for key in dict.fromkeys((r["size"], r["batch"]) for r in rows):
        out[key] = {r["part"]: r for r in _latest([r for r in rows if (r["size"], r["batch"]) == key])}
    return out


def cpu_parts_block(results: Path) -> list[str]:
    """TextSCD's measured time per part on the CPU, per setting, with each part's rate."""
    settings = part_rows(results)
    keys = list(settings)
    first = settings[keys[0]]["total"]
    lines = [f"{_src(results, CPU_BENCH)}, rows `part_time` ({first['time'][:10]}), TextSCD, fp32, clock: "
             f"{first['clock']}, {first['profiled_steps']} profiled steps:", "",
             "| part | " + " | ".join(f"{s}², batch {b}: ms (share) | GFLOP/s" for s, b in keys) + " |",
             "|---|" + "---|---|" * len(keys)]

    def cell(r: dict) -> str:
        rate = f"{r['gflop_per_s']:.0f}" if r.get("gflop") else "–"
        return f"{r['ms']:.0f} ({r['share_pct']:.1f} %) | {rate}"
    for part in (p for p in settings[keys[0]] if p != "total"):
        lines.append(f"| {PART_LABELS.get(part, part)} | "
                     + " | ".join(cell(settings[k][part]) if part in settings[k] else "– | –" for k in keys) + " |")
    lines.append("| sum of parts / unprofiled wall time | " + " | ".join(
        f"{settings[k]['total']['ms']:.0f} / {settings[k]['total']['wall_ms']:.0f} ms (busy "
        f"{settings[k]['total']['busy_pct']:.0f} %) | {settings[k]['total']['gflop_per_s']:.0f}" for k in keys) + " |")
    p = settings[keys[0]]
    share = {n: 100 * p[n]["gflop"] / p["total"]["gflop"] for n in ("encoder", "heads")}
    return lines + ["", f"At {keys[0][0]}², batch {keys[0][1]}: the encoder does {share['encoder']:.0f} % of the "
                    f"step's FLOPs in {p['encoder']['share_pct']:.0f} % of its time; the 3×3 classifiers do "
                    f"{share['heads']:.0f} % of the FLOPs in {p['heads']['share_pct']:.0f} % of the time, at "
                    f"1/{p['encoder']['gflop_per_s'] / p['heads']['gflop_per_s']:.0f} of the encoder's rate."]


def cpu_bench_block(results: Path) -> list[str]:
    """``textscd bench --device cpu`` lines: seconds per pair for train step and forward, and the parameters."""
    rows = [r for r in _rows(results / CPU_BENCH) if r.get("case") in ("train_step", "inference")]
    by = {(r["size"], r["batch"], r["case"], r["model"]): r for r in rows}   # the last row of each wins
    settings = list(dict.fromkeys((r["size"], r["batch"]) for r in rows))
    head = rows[-1]
    lines = [f"{_src(results, CPU_BENCH)} (`textscd bench --device cpu`, {head['device']}, {head['precision']}, "
             f"torch {head['torch']}, {head['time'][:10]}):", "",
             "| size, batch | Baseline train / forward, s per pair | TextSCD train / forward, s per pair | "
             "parameters (Baseline / TextSCD) |", "|---|---|---|---|"]
    for s, b in settings:
        cells = [" / ".join(f"{by[(s, b, c, m)]['step_ms_median'] / 1e3 / b:.3g}" for c in ("train_step", "inference"))
                 for m in MODELS]
        params = " / ".join(f"{by[(s, b, 'train_step', m)]['params_total'] / 1e6:.2f} M" for m in MODELS)
        lines.append(f"| {s}², {b} | {cells[0]} | {cells[1]} | {params} |")
    return lines


CPU_DEMO_BENCH = "benchmarks/cpu-x86-64-1threads.jsonl"   # textscd bench --device cpu at the demo's setting


def cpu_demo_bench_block(results: Path) -> list[str]:
    """``textscd bench --device cpu`` train steps at the demo's setting (one thread), every row in order, each
    against the median of the fp32, contiguous rows of its model in the same file."""
    path = results / CPU_DEMO_BENCH
    if not path.is_file():
        return [f"No record yet: `OMP_NUM_THREADS=1 textscd bench --device cpu --size 128 --batch 8 --precision "
                f"fp32|bf16 --channels-last off|on --record` appends to {_src(results, CPU_DEMO_BENCH)}."]
    rows = [r for r in _rows(path) if r.get("case") == "train_step"]
    ref = {m: statistics.median(r["step_ms_median"] for r in rows if r["model"] == m and r["precision"] == "fp32"
                                and not r["channels_last"] and not r.get("compile")) for m in {r["model"] for r in rows}}
    lines = [f"{_src(results, CPU_DEMO_BENCH)} (`textscd bench --device cpu`, one thread; every train-step row in "
             "order):", "", "| time | model | precision | channels_last | s per step (median) | pairs/s | "
             "× vs fp32 |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['time'][:16].replace('T', ' ')} | {NAMES[r['model']]} | {r['precision']} | "
              f"{'on' if r['channels_last'] else 'off'} | {r['step_ms_median'] / 1e3:.2f} | {r['pairs_per_s']:.2f} | "
              f"×{ref[r['model']] / r['step_ms_median']:.2f} |" for r in rows]
    return lines + ["", f"Setting: {rows[-1]['size']}², batch {rows[-1]['batch']}, torch {rows[-1]['torch']}. Rule: "
                    "a speed-up is the median step of the model's fp32, contiguous rows in this file over the row's."]


def _run_row(results: Path, run: str, what: str, target_s: int) -> str:
    """One series run's notebook time (``results/<run>/run.json``, the sum its chapters recorded) and its verdict."""
    rec = _json(results / run / "run.json")
    secs = rec["total_seconds"]
    return (f"| {what} | {_minutes(secs)} of notebooks ({rec['started'][:10]}, {rec['device']['device']}; "
            f"`results/{run}/run.json`) | ≤ {target_s // 60} min | {verdict(secs, target_s, False)} |")


def cpu_wall_block(results: Path) -> list[str]:
    """Wall times of the series and the tests on the project's CPU, each against its target."""
    lines = ["| what | measured | target | verdict |", "|---|---|---|---|",
             _run_row(results, "fast", "`textscd run --fast` (the whole series, TEXTSCD_FAST=1)", CPU_TARGETS_S["fast"]),
             _run_row(results, "demo", "`make demo` (everything, environment present)", CPU_TARGETS_S["demo"])]
    tests = _rows(results / "benchmarks" / "make-test.jsonl")
    for i, r in enumerate(tests):
        last, failed = i == len(tests) - 1, r.get("status", 0) != 0
        judged = ("failed (exit status {}), not judged".format(r["status"]) if failed else
                  verdict(r["seconds"], CPU_TARGETS_S["test"], False) if last else "earlier row, not judged")
        lines.append(f"| `make test` on a fresh clone, `.venv` created ({r['when'][:10]}, commit {r['commit'][:7]}, "
                     f"load {r['loadavg_before'][0]:.1f} at start) | {_minutes(r['seconds'])} (environment "
                     f"{r['env_seconds']:.0f} s; `results/benchmarks/make-test.jsonl`) | ≤ {CPU_TARGETS_S['test'] // 60} "
                     f"min | {judged} |")
    for r in _rows(results / "benchmarks" / "cpu.jsonl"):
        where = f"{r['date'][:10]}, load {r['load_average_1min']:.1f}; `results/benchmarks/cpu.jsonl`"
        lines += [f"| mini-SECOND demo generation ({r['pairs_generated']} pairs, {r['generated_size']}) | "
                  f"{r['demo_generation_s']:.1f} s ({where}) | seconds | – |",
                  f"| data loading, {r['size']} pairs: PNG decode → decoded cache (`SCDDataset`, augmentation) | "
                  f"{r['dataset_png_pairs_per_s']:,.0f} → {r['dataset_cache_pairs_per_s']:,.0f} pairs/s ({where}) | "
                  f"cache ≫ PNG | {'met' if r['dataset_cache_pairs_per_s'] > r['dataset_png_pairs_per_s'] else '**not met**'} |"]
    return lines + ["", "Rule: a time is met when it is at most its target; of `make test`'s rows only the latest "
                    "is judged (the README quotes it); \"cache ≫ PNG\" is met when the cache is faster."]


def cpu_step_block(results: Path) -> list[str]:
    """``tools/cpu_step_bench.py`` records: fp32 seconds per step and each variant's speed-up over fp32."""
    rel = "benchmarks/cpu-step.jsonl"
    variants = ("bf16", "channels_last", "bf16+cl", "compile", "bf16+compile")
    lines = [f"{_src(results, rel)} (`tools/cpu_step_bench.py`; every row in order; – = not timed in that row):", "",
             "| when | machine, load before | model | fp32, s per step | bf16 | channels_last | both | "
             "torch.compile | bf16 + compile | note |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in _rows(results / rel):
        m = r["machine"]
        for model in (x for x in MODELS if x in r["results"]):   # a row may time one model only
            v = r["results"][model]
            lines.append(f"| {r['when'][:16].replace('T', ' ')} | {m['cpu']}, {m['threads']} thread(s), "
                         f"{r['loadavg_before'][0]:.1f} | {NAMES[model]} | {v['fp32']['s_per_step']:.2f} | "
                         + " | ".join(f"×{v[k]['speed_vs_fp32']:.2f}" if k in v else "–" for k in variants)
                         + f" | {r.get('note', '')} |")
    return lines + ["", f"Setting: {r['setting']}. A speed-up is fp32's seconds over the variant's."]


def tail_scores(results: Path) -> list[dict]:
    """Val scores ×100 of the tail study's runs: the committed paper-tail runs (best epoch by val F_scd, from
    ``training_summary.json``) and the narrow tail's best checkpoints (the scores of their exported maps in
    ``results/cpu-30ep-narrow/errors/summary.json``; their epoch is not in a file)."""
    out = []
    for run in ("cpu-30ep", "cpu-30ep-seed1"):
        rel = f"{run}/metrics/training_summary.json"
        s = _json(results / rel)
        for m in MODELS:
            best = s["models"][m]["best"]
            out.append({"run": run, "tail": "paper", "seed": s["seed"], "model": m, "epoch": best["epoch"],
                        **{k: 100 * best[k] for k in ("F_scd", "mIoU", "OA", "SeK")}, "file": rel})
    rel = "cpu-30ep-narrow/errors/summary.json"
    scores = _json(results / rel)["scores"]
    for m in MODELS:
        out.append({"run": "tail study", "tail": "narrow", "seed": 0, "model": m, "epoch": None,
                    **{k: 100 * scores[NAMES[m]][k] for k in ("F_scd", "mIoU", "OA", "SeK")}, "file": rel})
    return out


def tail_study_block(results: Path) -> list[str]:
    """The narrow tail against the paper tail of the same seed, judged under the study's rule."""
    rows = tail_scores(results)
    noise = seed_noise(30)
    lines = ["| run | tail | seed | model | best epoch | F_scd | mIoU | OA | SeK | file |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['run']} | {r['tail']} | {r['seed']} | {NAMES[r['model']]} | "
              f"{r['epoch'] if r['epoch'] is not None else 'not recorded'} | {r['F_scd']:.2f} | {r['mIoU']:.2f} | "
              f"{r['OA']:.2f} | {r['SeK']:.2f} | `results/{r['file']}` |" for r in rows]
    lines += ["", f"Rule: `narrow` may become the default when each model's best val SeK is at least the paper tail's "
              f"of the same seed minus the 30-epoch seed noise ({noise} SeK, `seed_noise(30)`).", ""]
    passed = []
    for m in MODELS:
        ref = next(r for r in rows if r["model"] == m and r["tail"] == "paper" and r["seed"] == 0)
        new = next(r for r in rows if r["model"] == m and r["tail"] == "narrow")
        diff = new["SeK"] - ref["SeK"]
        passed.append(diff >= -noise)
        lines.append(f"- {NAMES[m]}: narrow − paper = {diff:+.2f} SeK: "
                     + ("within the noise or better." if passed[-1] else "below the noise: fails the rule."))
    lines.append("- Under the rule, " + ("both models pass." if all(passed) else "`narrow` does not pass."))
    return lines


BLOCKS = {"gpu-step": gpu_step_block, "cost-model": cost_block, "cpu-parts": cpu_parts_block,
          "cpu-wall": cpu_wall_block, "cpu-bench": cpu_bench_block, "cpu-step": cpu_step_block,
          "cost-tails": cost_tails_block, "tail-study": tail_study_block, "cpu-demo-bench": cpu_demo_bench_block}


def fill(page: str, results: Path) -> str:
    """``page`` with the lines between each pair of markers replaced by that block as the files give it today.
    Raises ValueError naming the problem when a marker is unknown, unclosed, repeated or missing."""
    lines, out, seen = page.split("\n"), [], []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        found = MARK.match(lines[i])
        i += 1
        if not found:
            continue
        name = found.group(1)
        if name not in BLOCKS or name in seen:
            raise ValueError(f"block '{name}' is {'repeated' if name in seen else 'not one the tool writes'}")
        try:
            i = lines.index(END.format(name), i)
        except ValueError:
            raise ValueError(f"block '{name}' has no line '{END.format(name)}'") from None
        seen.append(name)
        try:
            block = BLOCKS[name](results)
        except (KeyError, StopIteration) as e:
            raise ValueError(f"block '{name}': a record lacks {e or 'a needed row'}") from None
        out += ["", *block, ""]
    missing = [n for n in BLOCKS if n not in seen]
    if missing:
        raise ValueError("no block marker for " + ", ".join(missing))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the page; exit 1 and print the difference")
    ap.add_argument("--results", type=Path, default=ROOT / "results", help="the results folder (default results/)")
    ap.add_argument("--page", type=Path, default=PAGE, help="the page to fill (default docs/performance.md)")
    args = ap.parse_args(argv)
    try:
        old = args.page.read_text(encoding="utf-8")
        new = fill(old, args.results)
    except (OSError, ValueError) as e:   # a missing or malformed record, or a broken marker
        print(f"performance_page: {args.page} from {args.results}: {e}", file=sys.stderr)
        return 2
    if args.check:
        if old != new:
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                       f"{args.page} (committed)", "generated"))
            print("\nstale: run `python tools/performance_page.py` and commit docs/performance.md")
            return 1
        return 0
    atomic_write_text(args.page, new)
    print(f"wrote {args.page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
