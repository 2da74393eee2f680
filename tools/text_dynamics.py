"""When does TextSCD start to read its text? Trains TextSCD in chapter 05's setting K epochs at a time (the
trainer's resume is exact, so the run is the uninterrupted one) and, after each chunk, measures the text path
of that epoch's ``last.pt`` (a copy kept as ``epoch-NNN.pt``):

(a) the TGI's share of its output per level, ``||F_o - F_diff|| / ||F_diff||`` (oracle captions), and the
    part that depends on what the caption says, ``||F_o - F_o(empty)|| / ||F_diff||``;
(b) attention entropy over the caption's real tokens per level, mean over pixels, heads and pairs,
    divided by ``log L_valid`` (1 = uniform attention, 0 = one token);
(c) gradient norms of the TGI parameters and of the image encoder on one fixed training batch (a backward
    pass on a copy of the model, no step);
(d) val SeK with oracle, empty and shuffled captions.

Each measurement is one JSON line in ``results/text-dynamics/<run>.jsonl`` (a run with an intervention option:
``results/text-interventions/<run>.jsonl``, the line naming it); epochs already there are skipped.
Runs (data, checkpoints) live under ``$TEXTSCD_HOME`` (put it in /tmp). Measuring runs in a child process
(``--measure``), so a failed measurement never stops the training.

    TEXTSCD_HOME=/tmp/dyn-home OMP_NUM_THREADS=1 python tools/text_dynamics.py --seed 0 --every 3 --epochs 30
    python tools/text_dynamics.py --plot
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "results" / "text-dynamics"  # the reference runs (chapter 05's setting)
OUT_INTERVENTIONS = REPO / "results" / "text-interventions"  # runs with an intervention (ours)
VAL_PAIRS = 16  # ours: the first 16 val pairs (sorted names) for (a), (b); (d) scores every val pair


def train_config(args):
    """Chapter 05's TrainConfig for TextSCD on the embedded mini-SECOND (native 128², batch 8, lr 0.1), with
    the intervention ``args`` asks for (each ours, none the paper's): ``--tgi-lr-scale``, ``--zero-init-tgi``,
    ``--text-encoder``."""
    from textscd_lib.engine.trainer import TrainConfig
    return TrainConfig(data_root="", run=args.run, model="textscd", captions="oracle",
                       text_encoder=args.text_encoder, image_weights="auto", epochs=args.epochs, batch_size=8,
                       lr=0.1, size=None, device="cpu", seed=args.seed, max_steps_per_epoch=None, resume=True,
                       stop_after=args.every, tgi_lr_scale=args.tgi_lr_scale, zero_init_tgi=args.zero_init_tgi)


def intervention(args) -> str:
    """The run's departure from chapter 05's setting, in words ("none" for the study's reference runs)."""
    parts = []
    if args.tgi_lr_scale != 1.0:
        parts.append(f"TGI lr x{args.tgi_lr_scale:g}")
    if args.zero_init_tgi:
        parts.append("TGI output projections zero at the start")
    if args.text_encoder != "auto":
        parts.append(f"text encoder {args.text_encoder}")
    return ", ".join(parts) or "none"


def option_args(args) -> list[str]:
    """The command-line options that define the run (handed on to the measuring child)."""
    out = ["--run", args.run, "--seed", str(args.seed), "--epochs", str(args.epochs), "--every", str(args.every),
           "--tgi-lr-scale", str(args.tgi_lr_scale), "--text-encoder", args.text_encoder]
    return out + (["--zero-init-tgi"] if args.zero_init_tgi else [])


def snapshot(cfg) -> tuple[int, Path]:
    """Copy ``last.pt`` to ``epoch-NNN.pt`` (the next chunk overwrites ``last.pt``)."""
    from textscd_lib.engine.checkpoints import load_checkpoint
    last = cfg.checkpoint_dir() / "last.pt"
    epoch = int(load_checkpoint(last)["epoch"])
    dest = last.with_name(f"epoch-{epoch:03d}.pt")
    if not dest.is_file():
        shutil.copyfile(last, dest.with_suffix(".tmp"))
        dest.with_suffix(".tmp").replace(dest)
    return epoch, dest


def train_loop(args) -> int:
    """Train chunk by chunk; after each chunk snapshot and measure (in a child process)."""
    from textscd_lib.course.pipeline import train_pipeline
    cfg = train_config(args)
    until = min(args.until or args.epochs, args.epochs)
    while True:
        last = cfg.checkpoint_dir() / "last.pt"
        if last.is_file():
            epoch, _ = snapshot(cfg)
            if epoch >= until:
                break
        result = train_pipeline(cfg, export=False)
        epoch, path = snapshot(cfg)
        print(f"trained to epoch {epoch} ({result['steps']} steps)", flush=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", *option_args(args)]
        rc = subprocess.call(cmd)
        if rc != 0:
            print(f"measurement of epoch {epoch} failed (exit {rc}); training goes on", flush=True)
        if epoch >= until:
            break
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--every", type=int, default=3, help="epochs per chunk (K)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--run", default=None, help="run name (default dyn-s<seed>)")
    p.add_argument("--until", type=int, default=None,
                   help="stop after this epoch (the lr schedule stays that of --epochs: a prefix of the full run)")
    p.add_argument("--tgi-lr-scale", type=float, default=1.0, help="intervention: TGI lr multiplier (ours)")
    p.add_argument("--zero-init-tgi", action="store_true", help="intervention: TGI output projections zeroed")
    p.add_argument("--text-encoder", default="auto",
                   help="intervention: text encoder of the captions (auto = MiniLM offline; clip-random)")

    p.add_argument("--measure", action="store_true", help="measure every snapshot not yet in the jsonl")
    p.add_argument("--plot", action="store_true", help="draw results/text-dynamics/text-dynamics.png")
    args = p.parse_args(argv)
    args.run = args.run or f"dyn-s{args.seed}"
    if args.plot:
        return plot_all()
    if args.measure:
        return measure_all(args)
    return train_loop(args)


def measured_epochs(path: Path) -> set[int]:
    """Epochs already in a jsonl (so a rerun skips them)."""
    if not path.is_file():
        return set()
    return {json.loads(line)["epoch"] for line in path.read_text().splitlines() if line.strip()}


def append_line(path: Path, row: dict) -> None:
    """Append one JSON line (written whole with one write call, then flushed to disk)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def stacked(ds, idx) -> dict:
    """One batch dict of dataset items ``idx`` (normalised, un-augmented)."""
    items = [ds[i] for i in idx]
    return {k: torch.stack([it[k] for it in items]) for k in ("im1", "im2", "label1", "label2", "change")}


def attention_entropy(attention) -> dict[str, float]:
    """Per level: mean over pairs, heads and pixels of the attention entropy over the real tokens divided by
    log(L_valid) (padding gets exactly zero weight; pairs with one real token are left out)."""
    out = {}
    for level, a in attention.items():
        a = a.float()
        valid = (a.sum(dim=(1, 2)) > 0).sum(-1)  # (B,)
        h = -(a * a.clamp_min(1e-30).log()).sum(-1).mean(dim=(1, 2))  # (B,)
        keep = valid > 1
        out[str(level)] = float((h[keep] / valid[keep].float().log()).mean()) if keep.any() else float("nan")
    return out


def grad_norms(model, batch, feats) -> dict[str, float]:
    """L2 norms of the loss gradient over the TGI parameters and over the image encoder's, on one batch
    (train mode, a copy of the model; nothing steps)."""
    from textscd_lib.models.losses import total_loss
    m = copy.deepcopy(model).train()
    m.zero_grad(set_to_none=True)
    loss, _ = total_loss(m(batch["im1"], batch["im2"], *feats), batch)
    loss.backward()

    def norm(mod):
        g = [p.grad.norm() ** 2 for p in mod.parameters() if p.grad is not None]
        return float(torch.stack(g).sum().sqrt()) if g else 0.0
    tgi, enc = norm(m.tgi), norm(m.encoder)
    per_level = {k: norm(v) for k, v in m.tgi.items()}
    return {"tgi": tgi, "encoder": enc, "ratio": tgi / max(enc, 1e-30), "tgi_per_level": per_level,
            "loss": float(loss.detach())}


def caption_features(model, root, run_path, names):
    """``{source: TextFeatures}`` for oracle, empty and shuffled captions of the val pairs ``names``."""
    from textscd_lib.analysis.ablation import caption_sets
    from textscd_lib.engine.predictions import lazy_text_encoder, text_features_for
    enc_name = model.checkpoint["text_features"]
    caps, _ = caption_sets(root, run_path, names, ["oracle", "shuffled", "empty"], seed=0)
    # loaded as the run asked for it ("clip-random": CLIP's architecture with the same seeded random weights)
    encoder = lazy_text_encoder(model.checkpoint["config"].get("text_encoder", "auto"))
    return {s: text_features_for(run_path, enc_name, s, c, encoder) for s, c in caps.items()}


def measure_one(ck_path: Path, run_path: Path) -> dict:
    """Every number of one checkpoint: (a) TGI share, (b) attention entropy, (c) gradient norms, (d) swaps."""
    from textscd_lib.analysis.ablation import tgi_text_effect
    from textscd_lib.data.dataset import SCDDataset
    from textscd_lib.engine.checkpoints import load_model
    from textscd_lib.engine.predictions import label_maps, map_scores, predict_maps
    model = load_model(ck_path, "cpu")
    root = Path(model.checkpoint["data_root"])
    val, train = SCDDataset(root, "val"), SCDDataset(root, "train")
    feats = caption_features(model, root, run_path, val.names)
    sub = list(range(min(VAL_PAIRS, len(val))))
    vb = stacked(val, sub)
    vnames = [val.names[i] for i in sub]
    texts = {s: tf.lookup(vnames) for s, tf in feats.items()}
    eff = tgi_text_effect(model, vb["im1"], vb["im2"], texts, reference="empty")
    share = {str(lv): float(eff[("TGI adds", lv)]["oracle"]) for lv in eff["TGI adds"].columns}
    vs_empty = {str(lv): float(eff[("vs empty", lv)]["oracle"]) for lv in eff["vs empty"].columns}
    with torch.no_grad():
        att = model(vb["im1"], vb["im2"], *texts["oracle"], return_attention=True)["attention"]
    tb = stacked(train, list(range(8)))  # ours: the first 8 training pairs, un-augmented
    g = grad_norms(model, tb, feats["oracle"].lookup([train.names[i] for i in range(8)]))
    labels = label_maps(val)
    sek = {s: 100 * map_scores(predict_maps(model, val, tf, "cpu"), labels)["SeK"] for s, tf in feats.items()}
    return {"tgi_share": share, "tgi_vs_empty": vs_empty, "attention_entropy": attention_entropy(att),
            "grad": g, "sek": sek, "gap_empty": sek["oracle"] - sek["empty"],
            "gap_shuffled": sek["oracle"] - sek["shuffled"], "val_pairs_ab": len(sub), "val_pairs_sek": len(val),
            "substitutes": list(model.checkpoint.get("substitutes", []))}  # the run's offline stand-ins, recorded


def measure_all(args) -> int:
    """Measure every ``epoch-NNN.pt`` snapshot of the run not yet in its jsonl."""
    from textscd_lib.common.runs import run_dir
    cfg = train_config(args)
    out = (OUT if intervention(args) == "none" else OUT_INTERVENTIONS) / f"{args.run}.jsonl"
    done = measured_epochs(out)
    torch.manual_seed(0)
    for ck in sorted(cfg.checkpoint_dir().glob("epoch-*.pt")):
        epoch = int(ck.stem.split("-")[1])
        if epoch in done:
            continue
        t0 = time.perf_counter()
        row = measure_one(ck, run_dir(args.run))
        append_line(out, {"epoch": epoch, "seed": args.seed, "run": args.run,
                          "setting": "mini-SECOND 128px, batch 8, lr 0.1, oracle captions, chapter 05 defaults",
                          "intervention": intervention(args),
                          "epochs_planned": args.epochs, **row, "measure_s": round(time.perf_counter() - t0, 1)})
        print(f"epoch {epoch}: measured in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


def read_runs() -> dict[str, list[dict]]:
    """``{run: rows sorted by epoch}`` of every jsonl in results/text-dynamics/."""
    runs = {}
    for f in sorted(OUT.glob("*.jsonl")):
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        runs[f.stem] = sorted(rows, key=lambda r: r["epoch"])
    return runs


PANELS = [("TGI share ||F_o - F_diff|| / ||F_diff||", lambda r: r["tgi_share"]),
          ("caption-dependent part ||F_o - F_o(empty)|| / ||F_diff||", lambda r: r["tgi_vs_empty"]),
          ("attention entropy / log L_valid", lambda r: r["attention_entropy"]),
          ("grad norm: TGI / encoder", lambda r: {"all": r["grad"]["ratio"]}),
          ("SeK gap (points)", lambda r: {"oracle - empty": r["gap_empty"], "oracle - shuffled": r["gap_shuffled"]}),
          ("val SeK (%)", lambda r: r["sek"])]


def plot_all() -> int:
    """One row per run, one panel per measurement, against epoch; saved as text-dynamics.png."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = read_runs()
    if not runs:
        print(f"{OUT}: no measurements yet", file=sys.stderr)
        return 1
    fig, axes = plt.subplots(len(runs), len(PANELS), figsize=(4 * len(PANELS), 3.2 * len(runs)), squeeze=False)
    for row, (run, rows) in zip(axes, runs.items()):
        epochs = [r["epoch"] for r in rows]
        for ax, (title, get) in zip(row, PANELS):
            for key in get(rows[0]):
                ax.plot(epochs, [get(r)[key] for r in rows], marker="o", label=key)
            ax.set_title(f"{run}: {title}", fontsize=8)
            ax.set_xlabel("epoch")
            ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = OUT / "text-dynamics.tmp.png"
    fig.savefig(tmp, dpi=90)
    tmp.replace(OUT / "text-dynamics.png")
    print(OUT / "text-dynamics.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
