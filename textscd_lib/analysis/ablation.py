"""When does text help? Caption ablation helpers: chapter 07 (caption ablation).

Chapter 07 swaps the captions a trained TextSCD reads (oracle, noisy, shuffled, empty) and asks whether
its maps change, and whether they get better where only a caption can tell. The predictions themselves
come from `textscd_lib.engine.predictions` (:func:`~textscd_lib.engine.predictions.predict_maps`,
:func:`~textscd_lib.engine.predictions.text_features_for`, shared with chapter 06); this module measures them:

- :func:`caption_quality` — how well a caption set names the true transitions (coverage, precision).
- :func:`changed_pixels_differ` — how much a caption swap moves a model's output.
- :func:`ambiguous_masks` / :func:`ambiguity_errors` — the pixels of mini-SECOND that only a caption can
  resolve, and how a model does on them.
- :func:`tgi_text_effect` — how much the caption moves the TGI output, eq. (7).
- :func:`ablation_row` — one row of the chapter's table: Table 1's metrics, caption quality and the
  ambiguous-pixel errors of one set of predictions.
- :func:`ambiguous_transitions_named` — whether the captions name the true transition of the ambiguous pixels.
- :func:`text_verdict` — the chapter's answer, one sentence per finding; a SeK difference below the
  seed-to-seed noise (:func:`seed_noise` of the run's epochs, docs/facts.md#noise-between-runs) is reported as
  within the noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from textscd_lib.analysis.caption_errors import classes_mentioned
from textscd_lib.data.second import CLASSES
from textscd_lib.engine.predictions import map_scores
from textscd_lib.metrics import to_numpy


def changed_pixels_differ(a: Mapping[str, tuple], b: Mapping[str, tuple]) -> float:
    """Fraction of pixels (both dates) where two sets of predictions differ — how much the caption moves a
    model's output (chapter 07: 0 means TextSCD ignores its text)."""
    diff = sum(int((to_numpy(a[n][k]) != to_numpy(b[n][k])).sum()) for n in a for k in (0, 1))
    total = sum(to_numpy(a[n][k]).size for n in a for k in (0, 1))
    return diff / max(total, 1)


def ambiguous_masks(label1, label2, record: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of one mini-SECOND pair whose class only a caption can tell (chapter 07): where the scene log's
    ``ambiguous`` entry drew two classes (e.g. low vegetation / tree) with one texture — the changed pixels
    whose date-1 (mask 1) or date-2 (mask 2) class is one of the two and the other date's is not."""
    l1, l2 = to_numpy(label1), to_numpy(label2)
    m1 = np.zeros(l1.shape, bool)
    m2 = np.zeros(l1.shape, bool)
    for amb in record.get("ambiguous", []):
        idx = [CLASSES.index(c) for c in amb["classes"]]
        in1, in2 = np.isin(l1, idx), np.isin(l2, idx)
        changed = l1 > 0
        m1 |= changed & in1 & ~in2
        m2 |= changed & in2 & ~in1
    return m1, m2


def ambiguity_errors(names: Sequence[str], preds: Mapping[str, tuple], labels: Mapping[str, tuple],
                     scene_log: Mapping[str, Mapping]) -> dict[str, float]:
    """How a model does on the pixels only a caption can resolve (chapter 07), pooled over ``names``:
    ``pixels`` (ambiguous date-pixels), ``class_error`` (detected as changed but the ambiguous date's class
    wrong), ``partner_confusion`` (that class swapped for its look-alike partner) and ``miss``."""
    n = wrong = partner = missed = 0
    for name in names:
        rec = scene_log.get(name, {})
        if not rec.get("ambiguous"):
            continue
        l1, l2 = (to_numpy(x).astype(np.int64) for x in labels[name])
        p1, p2 = (to_numpy(x).astype(np.int64) for x in preds[name])
        pairs = [[CLASSES.index(c) for c in a["classes"]] for a in rec["ambiguous"]]
        for m, p, lab in zip(ambiguous_masks(l1, l2, rec), (p1, p2), (l1, l2)):
            if not m.any():
                continue
            pm, lm = p[m], lab[m]
            n += int(m.sum())
            missed += int((pm == 0).sum())
            wrong += int(((pm > 0) & (pm != lm)).sum())
            for a, b in pairs:
                partner += int((((lm == a) & (pm == b)) | ((lm == b) & (pm == a))).sum())
    detected = n - missed  # class errors are rates among the detected pixels: NaN when none was detected
    return {"pixels": n, "class_error": wrong / detected if detected else float("nan"),
            "partner_confusion": partner / detected if detected else float("nan"),
            "miss": missed / n if n else float("nan")}


def tgi_text_effect(model, x1, x2, texts: Mapping[str, tuple], reference: str = "empty") -> pd.DataFrame:
    """How much the caption moves the fused features at each TGI level (chapter 07, eq. (7)), on one batch,
    for each caption set in ``texts`` (name → ``(F_text, mask)``). Columns ``("TGI adds", level)`` =
    ``‖F_o − F_diff‖ / ‖F_diff‖`` and ``("vs <reference>", level)`` = ``‖F_o − F_o(reference)‖ / ‖F_diff‖``.
    The second is the part that depends on *what the caption says*: near 0, the text is ignored even when
    the TGI adds a large (caption-independent) term."""

    if not getattr(model, "uses_text", False):
        raise ValueError("tgi_text_effect needs a TextSCD model (Baseline has no TGI)")
    if reference not in texts:
        raise ValueError(f"reference caption set {reference!r} not among {sorted(texts)}")
    rows = []
    with torch.no_grad():
        f1, f2 = model.encoder(x1, x2)
        for i, (a, b) in enumerate(zip(f1, f2)):
            if str(i) not in model.tgi:
                continue
            F_diff = model.fuse[i](a, b)  # eq. (6)
            F_o = {name: model.tgi[str(i)](F_diff, *ft) for name, ft in texts.items()}  # eq. (7)
            norm = F_diff.norm().clamp_min(1e-12)
            for name, f in F_o.items():
                rows.append({"captions": name, "level": i, "TGI adds": float((f - F_diff).norm() / norm),
                             f"vs {reference}": float((f - F_o[reference]).norm() / norm)})
    return pd.DataFrame(rows).pivot(index="captions", columns="level")


def caption_quality(labels: Mapping[str, tuple], captions: Mapping[str, str]) -> dict[str, float]:
    """How good a caption set is against the truth (chapter 07), pooled over the tiles of ``labels``:
    ``coverage`` = share of changed pixels whose transition the caption names (both classes),
    ``precision`` = share of the classes a caption names that really take part in a change of its tile,
    ``quality`` = their harmonic mean (0 for empty captions)."""
    covered = changed = named = named_right = 0
    for name, (l1, l2) in labels.items():
        l1, l2 = to_numpy(l1).astype(np.int64), to_numpy(l2).astype(np.int64)
        found = classes_mentioned(captions.get(name, ""))
        code = l1 * len(CLASSES) + l2
        codes, counts = np.unique(code[l1 > 0], return_counts=True)
        present = {CLASSES[k] for c in codes for k in divmod(int(c), len(CLASSES))}
        for c, n in zip(codes, counts):
            a, b = divmod(int(c), len(CLASSES))
            covered += int(n) * (CLASSES[a] in found and CLASSES[b] in found)
            changed += int(n)
        named += len(found)
        named_right += len(found & present)
    cov = covered / changed if changed else float("nan")
    prec = named_right / named if named else 0.0
    quality = 2 * cov * prec / (cov + prec) if cov + prec > 0 else 0.0
    return {"coverage": cov, "precision": prec, "quality": quality}


def ablation_row(preds: Mapping[str, tuple], labels: Mapping[str, tuple], scene_log: Mapping[str, Mapping],
                 caption_texts: Mapping[str, str] | None = None, **columns) -> dict:
    """One row of chapter 07's ablation table for one set of predictions (``{pair: (map1, map2)}``):
    ``columns`` as given (experiment, model, captions, ...), then — when ``caption_texts`` is given — the
    measured quality of those captions (:func:`caption_quality` as ``caption quality``, ``coverage``,
    ``precision``), then F_scd, mIoU, OA, SeK (:func:`textscd_lib.engine.predictions.map_scores`) and the errors on
    the ambiguous pixels (:func:`ambiguity_errors`) as ``amb. <key>``. Pass column names with spaces as
    ``**{"nominal quality": 1.0}``."""

    row = dict(columns)
    if caption_texts is not None:
        q = caption_quality({n: labels[n] for n in preds}, caption_texts)
        row.update({"caption quality": q["quality"], "coverage": q["coverage"], "precision": q["precision"]})
    row.update(map_scores(preds, labels))
    row.update({f"amb. {k}": v for k, v in ambiguity_errors(list(preds), preds, labels, scene_log).items()})
    return row


# --------------------------------------------------------------------------------------------------
# the verdict of chapter 07: does TextSCD read its caption?
# --------------------------------------------------------------------------------------------------
# Seed-to-seed spread of SeK for one model (the larger of Baseline's and TextSCD's range over the seeds), measured
# in the course's CPU settings on mini-SECOND (docs/facts.md#noise-between-runs). A smaller difference is not a
# finding. 30 epochs: the committed runs cpu-30ep and cpu-30ep-seed1 (their metrics/table1.json); 6 epochs (the
# demo): results/seed-study/demo-6ep.json, seeds 0-3. tests/test_ablation.py recomputes both from those files, so
# the constants cannot drift from the runs (docs/results.md prints the seeds' scores).
SEK_NOISE_BY_EPOCHS = {6: 1.7, 30: 0.92}
SEK_NOISE = SEK_NOISE_BY_EPOCHS[30]


def seed_noise(epochs: int | None) -> float:
    """The seed-to-seed SeK spread measured for the training length nearest to ``epochs`` (the larger one on a
    tie; :data:`SEK_NOISE`, the 30-epoch value, when unknown). Our rule: we measured two lengths only, so a
    run of 10 epochs gets the 6-epoch spread; the spread shrinks with training, so that errs towards caution."""
    if not epochs:
        return SEK_NOISE
    nearest = min(SEK_NOISE_BY_EPOCHS, key=lambda e: (abs(e - epochs), -SEK_NOISE_BY_EPOCHS[e]))
    return SEK_NOISE_BY_EPOCHS[nearest]


def ambiguous_transitions_named(names: Sequence[str], labels: Mapping[str, tuple],
                                scene_log: Mapping[str, Mapping], captions: Mapping[str, str]) -> tuple[int, int]:
    """``(named, total)`` ambiguous pixels (:func:`ambiguous_masks`) whose caption names both classes of their true
    transition (chapter 07): is the information the look-alikes need in the caption at all?"""
    named = total = 0
    for n in names:
        rec = scene_log.get(n, {})
        if not rec.get("ambiguous"):
            continue
        l1, l2 = (to_numpy(x) for x in labels[n])
        m = np.logical_or(*ambiguous_masks(l1, l2, rec))
        found = classes_mentioned(captions.get(n, ""))
        for a, b in set(zip(l1[m].tolist(), l2[m].tolist())):
            k = int(((l1 == a) & (l2 == b) & m).sum())
            total += k
            named += k * (CLASSES[a] in found and CLASSES[b] in found)
    return named, total


def _within(x: float, noise: float) -> str:
    return f"{x:+.2f} SeK, within the seed-to-seed noise of ±{noise:.1f}" if abs(x) < noise else f"{x:+.2f} SeK"


def text_verdict(test_time: pd.DataFrame, effect: pd.DataFrame | None, source: str,
                 noise: float = SEK_NOISE) -> list[str]:
    """Chapter 07's answer to "does TextSCD read its caption?", one sentence per finding, from the measurements.

    ``test_time``: the ablation rows of the trained TextSCD reading each caption set, indexed by caption set,
    with ``"(none)"`` = Baseline; columns ``SeK``, ``F_scd`` (fractions), ``moved`` (share of pixels that change
    against ``source``) and ``amb. partner_confusion``. ``effect``: :func:`tgi_text_effect` joined with its
    ``vs <source>`` columns, or None when only predictions are at hand (no sentence about the TGI then). A SeK difference smaller than ``noise`` (the seed-to-seed spread) is reported as
    within the noise, never as a gain or a loss."""
    sek, pc = 100 * test_time["SeK"], 100 * test_time["amb. partner_confusion"]
    gain, reads, lies = sek[source] - sek["(none)"], sek[source] - sek["empty"], sek[source] - sek["shuffled"]
    moved = 100 * test_time.loc["empty", "moved"]
    if np.isnan(test_time.loc[source, "F_scd"]):
        return ["TextSCD predicts no change anywhere on val (F_scd undefined): it is undertrained, and this ablation "
                "cannot say anything about its text. Train longer (chapter 05, EPOCHS) and rerun."]
    out = [f"TextSCD ({source}) − Baseline: {_within(gain, noise)}."]
    if abs(reads) < noise and abs(lies) < noise:
        out.append(f"TextSCD's SeK does not depend on its caption: with empty or shuffled captions it moves by "
                   f"{-reads:+.2f} / {-lies:+.2f} SeK, within the noise ({moved:.1f}% of pixels change).")
        if gain >= noise:
            out.append("So its gain over Baseline does not come from the text: the same trained model without text "
                       "scores the same; the TGI blocks add layers and change the optimisation path.")
    elif reads >= noise:
        out.append(f"TextSCD uses its caption: {source} captions score {reads:+.2f} SeK over empty ones and "
                   f"{_within(lies, noise)} over shuffled ones.")
    elif reads <= -noise:
        out.append(f"Captions hurt the trained TextSCD: empty captions score {-reads:+.2f} SeK better than {source}.")
    else:
        out.append(f"Empty captions change SeK by {-reads:+.2f} (within the noise), shuffled ones by {-lies:+.2f}: "
                   "what the caption says matters more than whether there is one.")
    if not np.isnan(pc["(none)"]) and not np.isnan(pc[source]) and pc[source] > pc["(none)"] - 2:
        out.append("Where only the caption can tell (ambiguous pixels), TextSCD confuses the look-alikes about as "
                   "often as Baseline: the class decision there does not use the text.")
    if effect is not None:  # None: no model at hand (committed predictions), nothing to say about its inside
        out.append(_inside(effect, source))
    return out


def _inside(effect: pd.DataFrame, source: str) -> str:
    """Having a caption at all (vs empty) against *which* caption it is (vs ``source``), level by level."""
    presence = effect["vs empty"].drop(index="empty").min()
    content = effect[f"vs {source}"].drop(index=[source, "empty"], errors="ignore").max()
    if (presence < 0.01).all():
        return ("Inside, no caption moves F_o away from the empty caption's by 0.01·‖F_diff‖ at any TGI level: "
                "the TGI ignores the text.")
    ratio = content / presence.clip(lower=1e-9)
    if (ratio < 0.5).all():
        link, meaning = "but", "less than half as far at every level: the TGI registers that there is a sentence " \
                               "more than what it says"
    elif (ratio < 1).all():
        link, meaning = "but", "less far at every level: the fused features depend on what the caption says, " \
                               "though less than on whether there is one"
    else:
        levels = ", ".join(str(k) for k in ratio.index[ratio >= 1])
        link, meaning = "and", f"as far or farther at level {levels}: the fused features depend on what it says"
    return (f"Inside, at TGI levels {'/'.join(str(k) for k in ratio.index)}, any caption moves F_o away from the "
            f"empty caption's by at least {'/'.join(f'{v:.2f}' for v in presence)}·‖F_diff‖, {link} replacing the "
            f"{source} caption by another moves it by at most {'/'.join(f'{v:.2f}' for v in content)}·‖F_diff‖ — "
            f"{meaning}.")


# --------------------------------------------------------------------------------------------------
# chapter 07's caption sets, shared with tools/export_reference_predictions.py
# --------------------------------------------------------------------------------------------------
def test_time_sources(source: str, noise_levels: Sequence[float], scene_log: bool = True) -> list[str]:
    """The caption sets chapter 07's trained TextSCD reads at test time: its own ``source`` first, then
    ``noisy-P`` for each level (only with a scene log: noisy captions are drawn from it), ``shuffled`` and ``empty``."""
    noisy = [f"noisy-{p}" for p in noise_levels] if scene_log else []
    return [source, *noisy, "shuffled", "empty"]


def caption_sets(root, run_path, names: Sequence[str], sources: Sequence[str], seed: int = 0,
                 scene_log: bool = True) -> tuple[dict[str, dict[str, str]], dict[str, dict]]:
    """``({source: {pair: caption}}, {source: how it was made})`` for the val pairs ``names`` (chapter 07's test-time
    swap, and the committed reference predictions). With a scene log every set is a store of the run,
    ``results/<run>/captions/<source>.jsonl`` (`textscd_lib.text.captions.ensure_captions`; only ``sources[0]`` is
    recorded as the run's caption source). Without one (real SECOND), ``shuffled`` gives each pair the next pair's
    caption (a derangement of ``sources[0]``) and ``empty`` the empty caption."""
    from textscd_lib.text.captions import ensure_captions, load_captions
    from textscd_lib.text.store import CaptionStore

    caps: dict[str, dict[str, str]] = {}
    how: dict[str, dict] = {}
    for i, s in enumerate(sources):
        if scene_log or i == 0:
            store = ensure_captions(root, s, run_path, record=(i == 0), seed=seed)
            all_caps = load_captions(store)
            caps[s] = {n: all_caps.get(n, "") for n in names}
            params = next(iter(CaptionStore(store).latest().values()), {}).get("params") or {}
            how[s] = {"store": f"captions/{store.name}", "params": params}
        elif s == "shuffled":
            own = [caps[sources[0]][n] for n in names]
            caps[s] = dict(zip(names, own[1:] + own[:1]))
            how[s] = {"made": f"each val pair gets the next pair's {sources[0]} caption (a derangement)"}
        else:
            caps[s] = {n: "" for n in names}
            how[s] = {"made": "the empty caption for every pair"}
    return caps, how


# --------------------------------------------------------------------------------------------------
# committed predictions: chapters 06 and 07 without a trained model
# --------------------------------------------------------------------------------------------------
REFERENCE_RUN = "cpu-30ep"
REFERENCE_FOLDER = "reference-predictions"
MANIFEST = "manifest.json"
MAKE_CHECKPOINTS = ".venv/bin/textscd run --only 05 (TEXTSCD_FAST=1 .venv/bin/textscd run --fast --only 01,02,05 in FAST mode)"


def file_digest(path) -> str:
    """The first 16 hex digits of a file's SHA-256: how a manifest names the data it was computed on."""
    import hashlib
    from pathlib import Path

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def committed_run(run: str):
    """``<run>/`` of a committed run: under this working folder's results root when it is there, else under the
    ``results/`` committed beside the library — so a chapter executed in a fresh ``TEXTSCD_HOME`` (the tests, a
    series of its own) still reads the committed runs' files. The first when neither exists."""
    from pathlib import Path

    from textscd_lib.common.paths import results_root

    here = results_root() / run
    committed = Path(__file__).resolve().parents[2] / "results" / run
    return here if here.is_dir() or not committed.is_dir() else committed


def reference_folder(run: str):
    """``<run>/reference-predictions/`` of a run holding committed predictions (:func:`committed_run`);
    FileNotFoundError naming the command that makes them when there are none."""
    from pathlib import Path

    from textscd_lib.common.paths import results_root

    here = results_root() / run / REFERENCE_FOLDER
    committed = Path(__file__).resolve().parents[2] / "results" / run / REFERENCE_FOLDER
    for folder in (here, committed):
        if (folder / MANIFEST).is_file():
            return folder
    raise FileNotFoundError(f"{here / MANIFEST}: no committed predictions of run {run!r} (nor in {committed}); "
                            f"make them with tools/export_reference_predictions.py --run {run}")


def choose_predictions(predictions: str, run_path) -> tuple[str, object]:
    """Chapters 06 and 07's ``PREDICTIONS`` parameter → ``("models", None)`` to analyse this run's own checkpoints
    (chapter 05's ``checkpoints/{baseline,textscd}/best.pt``) or ``("reference", folder)`` for committed
    predictions. ``"auto"``: the checkpoints when both exist, else :data:`REFERENCE_RUN`'s committed predictions;
    ``"run"``: the checkpoints or a FileNotFoundError naming the command that makes them; any other value: the
    committed predictions of that run."""
    from pathlib import Path

    ckpts = [Path(run_path) / "checkpoints" / m / "best.pt" for m in ("baseline", "textscd")]
    have = all(p.is_file() for p in ckpts)
    if predictions == "run" or (predictions == "auto" and have):
        if not have:
            missing = [str(p) for p in ckpts if not p.is_file()]
            raise FileNotFoundError(f"PREDICTIONS='run' but checkpoint(s) {missing} are missing: train them first "
                                    f"with {MAKE_CHECKPOINTS}, or set PREDICTIONS='auto' for the committed ones")
        return "models", None
    return "reference", reference_folder(REFERENCE_RUN if predictions == "auto" else predictions)


def load_reference(folder) -> tuple[dict, dict[str, dict[str, tuple]], dict[str, dict[str, str]]]:
    """``(manifest, {model: {pair: (map1, map2)}}, {caption set: {pair: caption}})`` of a
    ``reference-predictions/`` folder (tools/export_reference_predictions.py wrote it); a ValueError naming the file
    when a model's maps are incomplete."""
    import json
    from pathlib import Path

    from textscd_lib.data.second import read_label

    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    names = manifest["val_pairs"]
    preds: dict[str, dict[str, tuple]] = {}
    for model in manifest["models"]:
        files = [[folder / model / d / f"{n}.png" for d in ("label1", "label2")] for n in names]
        missing = [str(f) for pair in files for f in pair if not f.is_file()]
        if missing:
            raise ValueError(f"{missing[0]}: missing ({len(missing)} map(s) of {model} missing); re-export them")
        preds[model] = {n: tuple(read_label(f) for f in pair) for n, pair in zip(names, files)}
    captions = json.loads((folder / "captions.json").read_text(encoding="utf-8"))
    return manifest, preds, captions


def reference_data(manifest: Mapping, folder):
    """The mini-SECOND folder the committed predictions were made on, regenerated from the manifest's parameters
    (seeded, so the same pairs) and checked against its scene-log digest; a ValueError naming both when they
    differ (the generator changed since the export)."""
    from textscd_lib.data.synthetic import ensure_mini_second

    data = manifest["data"]
    root = ensure_mini_second(root=f"data/{data['folder']}", **data["params"])
    got = file_digest(root / "scene_log.jsonl")
    if got != data["scene_log_sha256"]:
        raise ValueError(f"{root / 'scene_log.jsonl'}: digest {got}, but {folder}/{MANIFEST} was made on "
                         f"{data['scene_log_sha256']}: the data generator changed; re-export the predictions")
    return root
