"""Error analysis of semantic change maps: chapter 06 (metrics and error analysis).

Everything here works on *index maps* (H×W, values 0..6, 0 = unchanged; `textscd_lib.second.CLASSES`):

- :func:`error_map` — every pixel of one pair in one of five categories (:data:`ERROR_CATEGORIES`):
  correct unchanged, correct change, false alarm (change predicted where none), miss (change not
  predicted), right change / wrong class. The paper (§4.2, Fig. 4) claims TGI "mitigates false
  detections and omissions": these maps count exactly those.
- :func:`tile_scores` / :func:`worst_tiles` — SeK and F_scd of every tile from a per-tile confusion
  matrix (`textscd_lib.metrics`, REFERENCE §2: SeK = κ·exp(IoU_c)/e).
- :func:`classes_mentioned` / :func:`transition_errors` — does the caption name the classes of a true
  from→to transition, and how many of that region's pixels are wrong?
- :func:`fix_cause_map` — where TextSCD fixes or causes errors compared with Baseline, pixel by pixel.
- :func:`table1` — Table 1 in the paper's format, the paper's rows labelled as the paper's (SECOND)
  beside ours (labelled with the dataset and the run).
- :func:`label_maps`, :func:`predict_maps` and :func:`text_features_for` — a model's maps in memory for
  any caption set, shared with chapter 07 (`textscd_lib.ablation`, "when does text help?").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from textscd_lib.second import CLASSES

# --------------------------------------------------------------------------------------------------
# per-pixel error categories
# --------------------------------------------------------------------------------------------------
CORRECT_UNCHANGED, CORRECT_CHANGE, FALSE_ALARM, MISS, WRONG_CLASS = range(5)
ERROR_CATEGORIES = ("correct unchanged", "correct change", "false alarm", "miss", "right change, wrong class")
# Colours for the categories (RGB uint8), chosen apart from the SECOND class colours: white, dark grey,
# magenta (false alarm), cyan (miss), amber (wrong class).
ERROR_COLORS = np.array([[255, 255, 255], [60, 60, 60], [255, 0, 255], [0, 220, 255], [255, 190, 0]],
                        dtype=np.uint8)


def _np(a) -> np.ndarray:
    """Torch tensor or array-like → numpy (no copy for numpy)."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def error_map(pred1, pred2, label1, label2) -> np.ndarray:
    """Per-pixel error category of one pair (chapter 06), uint8 with values in :data:`ERROR_CATEGORIES`.

    A pixel is *changed* in the truth when ``label1 > 0`` (REFERENCE §1) and *predicted changed* when
    ``pred1 > 0`` or ``pred2 > 0``:

    - correct unchanged: truth unchanged, predicted unchanged;
    - false alarm: truth unchanged, change predicted;
    - miss: truth changed, no change predicted on either date;
    - correct change: truth changed, both dates' classes right;
    - right change, wrong class: truth changed, change predicted, at least one date's class wrong
      (a change found on one date only counts here too: its "unchanged" on the other date is a wrong class).

    Works on any leading batch shape.
    """
    p1, p2, l1, l2 = (_np(x).astype(np.int64) for x in (pred1, pred2, label1, label2))
    if not (p1.shape == p2.shape == l1.shape == l2.shape):
        raise ValueError(f"error_map: shapes differ: pred {p1.shape}/{p2.shape}, label {l1.shape}/{l2.shape}")
    true_change = (l1 > 0) | (l2 > 0)
    pred_change = (p1 > 0) | (p2 > 0)
    both_right = (p1 == l1) & (p2 == l2)
    out = np.full(l1.shape, WRONG_CLASS, dtype=np.uint8)
    out[~true_change & ~pred_change] = CORRECT_UNCHANGED
    out[~true_change & pred_change] = FALSE_ALARM
    out[true_change & ~pred_change] = MISS
    out[true_change & pred_change & both_right] = CORRECT_CHANGE
    return out


def error_counts(err: np.ndarray) -> dict[str, int]:
    """Pixels per error category of one or many error maps (chapter 06)."""
    counts = np.bincount(_np(err).ravel(), minlength=len(ERROR_CATEGORIES))
    return {name: int(c) for name, c in zip(ERROR_CATEGORIES, counts)}


def colorize_errors(err: np.ndarray) -> np.ndarray:
    """Error map → RGB (H, W, 3) uint8 in :data:`ERROR_COLORS` (chapter 06)."""
    return ERROR_COLORS[_np(err)]


def overlay_errors(image: np.ndarray, err: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """The error categories blended over an RGB image (chapter 06); correct pixels are left untouched,
    so the eye lands on false alarms, misses and wrong classes."""
    image = _np(image).astype(np.float32)
    err = _np(err)
    col = ERROR_COLORS[err].astype(np.float32)
    a = np.where(np.isin(err, (FALSE_ALARM, MISS, WRONG_CLASS)), alpha, 0.0)[..., None]
    return (image * (1 - a) + col * a).round().clip(0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# per-tile scores
# --------------------------------------------------------------------------------------------------
def tile_scores(names: Sequence[str], preds: Mapping[str, tuple], labels: Mapping[str, tuple]) -> pd.DataFrame:
    """SeK, F_scd, mIoU, OA and error-category fractions of every tile (chapter 06).

    ``preds[name]`` and ``labels[name]`` are ``(map1, map2)`` index maps. Scores come from one confusion
    matrix per tile (`textscd_lib.metrics.SCDConfusion`, REFERENCE §2), as fractions (×100 for tables).
    """
    from textscd_lib.metrics import SCDConfusion

    rows = []
    for name in names:
        p1, p2 = preds[name]
        l1, l2 = labels[name]
        conf = SCDConfusion()
        conf.update(_np(p1), _np(p2), _np(l1), _np(l2))
        s = conf.scores()
        err = error_map(p1, p2, l1, l2)
        frac = np.bincount(err.ravel(), minlength=len(ERROR_CATEGORIES)) / err.size
        row = {"name": name, **{k: float(s[k]) for k in ("SeK", "F_scd", "mIoU", "OA")},
               "changed": float((_np(l1) > 0).mean())}
        row.update({c: float(f) for c, f in zip(ERROR_CATEGORIES[2:], frac[2:])})
        rows.append(row)
    return pd.DataFrame(rows).set_index("name")


def worst_tiles(scores: pd.DataFrame, k: int = 6, by: str = "SeK") -> pd.DataFrame:
    """The ``k`` tiles with the lowest ``by`` (chapter 06). Tiles where the score is undefined (NaN: no change
    in the truth and none predicted — nothing to get wrong) are left out."""
    return scores.dropna(subset=[by]).sort_values([by, "false alarm"], ascending=[True, False]).head(k)


# --------------------------------------------------------------------------------------------------
# captions: which classes does a caption mention?
# --------------------------------------------------------------------------------------------------
# Synonyms → class. Multi-word phrases are matched first and removed, so "sports field" is a playground
# and not also a (low-vegetation) "field". "vegetation"/"greenery" alone name both vegetation classes.
CLASS_WORDS: dict[str, tuple[str, ...]] = {
    "water": ("water", "waters", "lake", "lakes", "river", "rivers", "pond", "ponds", "pool", "pools",
              "reservoir", "reservoirs", "canal", "canals", "stream", "streams", "sea"),
    "ground": ("ground", "bare soil", "bare ground", "bare land", "soil", "dirt", "sand", "barren",
               "non-vegetated", "non vegetated", "road", "roads", "pavement", "parking lot", "parking lots",
               "construction site", "construction sites", "earth", "impervious surface"),
    "low vegetation": ("low vegetation", "grass", "grassland", "grasslands", "lawn", "lawns", "meadow",
                       "meadows", "farmland", "farmlands", "cropland", "crops", "field", "fields", "shrubs",
                       "bushes"),
    "tree": ("tree", "trees", "forest", "forests", "woods", "woodland", "woodlands", "tree cover"),
    "building": ("building", "buildings", "house", "houses", "housing", "structure", "structures",
                 "roof", "roofs", "rooftops", "residential", "apartment", "apartments", "factory",
                 "factories", "warehouse", "warehouses"),
    "playground": ("playground", "playgrounds", "sports field", "sports fields", "sport field", "court",
                   "courts", "stadium", "stadiums", "running track", "track", "pitch", "pitches"),
}
GENERIC_WORDS: dict[str, tuple[str, ...]] = {"vegetation": ("low vegetation", "tree"),
                                             "greenery": ("low vegetation", "tree"),
                                             "green space": ("low vegetation", "tree")}


def _phrase_table() -> list[tuple[str, tuple[str, ...]]]:
    table = [(w, (cls,)) for cls, words in CLASS_WORDS.items() for w in words]
    table += list(GENERIC_WORDS.items())
    return sorted(table, key=lambda t: -len(t[0]))  # longest phrases first


_PHRASES = _phrase_table()


# "No noticeable changes in buildings, roads or vegetation" names classes without saying they changed:
# a negated change is cut out up to the end of its sentence or to a "but"/"while"/"however".
_NEGATION = re.compile(r"\bno\b(?:\s+\w+){0,2}?\s+(?:change|changes|difference|differences)\b.*?"
                       r"(?=\bbut\b|\bwhile\b|\bhowever\b|\bwhereas\b|[.;!?]|$)")


def classes_mentioned(caption: str) -> set[str]:
    """Class names (from `CLASSES`) that a caption mentions through :data:`CLASS_WORDS` (chapters 06, 07).

    Case-insensitive, whole words; the longest phrase wins ("sports field" → playground only); negated
    changes ("no obvious changes in buildings") do not count."""
    text = _NEGATION.sub(" ", (caption or "").lower())
    text = " " + re.sub(r"[^a-z\- ]+", " ", text) + " "
    found: set[str] = set()
    for phrase, classes in _PHRASES:
        pattern = r"(?<![a-z\-])" + re.escape(phrase) + r"(?![a-z\-])"
        if re.search(pattern, text):
            found.update(classes)
            text = re.sub(pattern, " ", text)
    return found


def transition_mention(caption: str, from_cls: str, to_cls: str) -> str:
    """How a caption covers the transition ``from_cls → to_cls`` (chapters 06, 07): "both", "from only",
    "to only" or "neither" of the two class names is mentioned."""
    found = classes_mentioned(caption)
    f, t = from_cls in found, to_cls in found
    return "both" if f and t else "from only" if f else "to only" if t else "neither"


def transition_errors(names: Sequence[str], preds: Mapping[str, tuple], labels: Mapping[str, tuple],
                      captions: Mapping[str, str] | None = None, min_pixels: int = 1) -> pd.DataFrame:
    """One row per (tile, true transition a→b): its pixels, how the caption covers it, and how its pixels
    were predicted (chapter 06): ``error`` (not exactly a→b), ``miss`` (no change predicted),
    ``wrong class`` (change predicted, classes wrong)."""
    captions = captions or {}
    rows = []
    for name in names:
        p1, p2 = (_np(x).astype(np.int64) for x in preds[name])
        l1, l2 = (_np(x).astype(np.int64) for x in labels[name])
        err = error_map(p1, p2, l1, l2)
        code = l1 * len(CLASSES) + l2
        for c in np.unique(code[l1 > 0]):
            a, b = divmod(int(c), len(CLASSES))
            region = code == c
            n = int(region.sum())
            if n < min_pixels:
                continue
            cap = captions.get(name, "")
            e = err[region]
            rows.append({"name": name, "from": CLASSES[a], "to": CLASSES[b], "transition": f"{CLASSES[a]}→{CLASSES[b]}",
                         "pixels": n, "mention": transition_mention(cap, CLASSES[a], CLASSES[b]),
                         "error": float((e != CORRECT_CHANGE).mean()), "miss": float((e == MISS).mean()),
                         "wrong class": float((e == WRONG_CLASS).mean())})
    cols = ["name", "from", "to", "transition", "pixels", "mention", "error", "miss", "wrong class"]
    return pd.DataFrame(rows, columns=cols)


def error_summary(table: pd.DataFrame, by: str | list[str]) -> pd.DataFrame:
    """Pixel-weighted error rates of a :func:`transition_errors` table grouped ``by`` (chapter 06):
    which transitions / caption situations hold most errors."""
    t = table.assign(**{f"_{k}": table[k] * table["pixels"] for k in ("error", "miss", "wrong class")})
    g = t.groupby(by, observed=True)
    out = pd.DataFrame({"regions": g.size(), "pixels": g["pixels"].sum()})
    for k in ("error", "miss", "wrong class"):
        out[k] = g[f"_{k}"].sum() / out["pixels"]
    out["share of errors"] = g["_error"].sum() / max(t["_error"].sum(), 1e-12)
    return out.sort_values("share of errors", ascending=False)


# --------------------------------------------------------------------------------------------------
# Baseline vs TextSCD
# --------------------------------------------------------------------------------------------------
BOTH_RIGHT, FIXED, CAUSED, BOTH_WRONG = range(4)
FIX_CATEGORIES = ("both right", "fixed by TextSCD", "caused by TextSCD", "both wrong")
FIX_COLORS = np.array([[255, 255, 255], [0, 190, 190], [230, 110, 0], [110, 110, 110]], dtype=np.uint8)


def fix_cause_map(base: tuple, text: tuple, label: tuple) -> np.ndarray:
    """Per pixel: both right, fixed by TextSCD (Baseline wrong, TextSCD right), caused by TextSCD, or both
    wrong (chapter 06). ``base``, ``text`` and ``label`` are ``(map1, map2)``; right = both dates' classes
    equal the truth."""
    l1, l2 = (_np(x) for x in label)
    rb = (_np(base[0]) == l1) & (_np(base[1]) == l2)
    rt = (_np(text[0]) == l1) & (_np(text[1]) == l2)
    out = np.full(l1.shape, BOTH_WRONG, dtype=np.uint8)
    out[rb & rt] = BOTH_RIGHT
    out[~rb & rt] = FIXED
    out[rb & ~rt] = CAUSED
    return out


# --------------------------------------------------------------------------------------------------
# Table 1
# --------------------------------------------------------------------------------------------------
METRIC_COLUMNS = ("F_scd", "mIoU", "OA", "SeK")  # the paper's column order; its "F1" is F_scd
# REFERENCE §4 — the paper's Table 1 (SECOND val split, ×100).
PAPER_TABLE1: tuple[tuple[str, float, float, float, float], ...] = (
    ("HRSCD-S4", 57.04, 69.94, 85.97, 16.72),
    ("SCDNet", 59.34, 71.28, 86.57, 19.26),
    ("MTSCD", 60.50, 71.52, 86.70, 20.26),
    ("HGINet", 61.02, 71.54, 87.21, 21.28),
    ("Baseline", 60.67, 72.25, 87.18, 20.90),
    ("+TGI (TextSCD)", 61.90, 72.38, 87.67, 21.66),
)
PAPER_SOURCE = "paper, SECOND"


def table1(ours: Mapping[str, Mapping[str, float]] | None = None, dataset: str = "mini-SECOND",
           run: str = "demo", include_paper: bool = True) -> pd.DataFrame:
    """Table 1 in the paper's format (chapter 06): rows ``method``, columns F_scd, mIoU, OA, SeK (×100) and
    ``source``. The paper's rows carry source "paper, SECOND"; ``ours`` (method → scores as fractions, e.g.
    from ``SCDConfusion.scores()``) carry "ours, <dataset>, run <run>" — numbers on different datasets,
    side by side, never mixed up."""
    rows = []
    if include_paper:
        rows += [{"method": m, **dict(zip(METRIC_COLUMNS, v)), "source": PAPER_SOURCE}
                 for m, *v in PAPER_TABLE1]
    for method, scores in (ours or {}).items():
        missing = [k for k in METRIC_COLUMNS if k not in scores]
        if missing:
            raise ValueError(f"table1: scores of {method!r} lack {missing} (have {sorted(scores)})")
        rows.append({"method": method, **{k: round(100 * float(scores[k]), 2) for k in METRIC_COLUMNS},
                     "source": f"ours, {dataset}, run {run}"})
    return pd.DataFrame(rows, columns=["method", *METRIC_COLUMNS, "source"])


# --------------------------------------------------------------------------------------------------
# predictions in memory (chapters 06, 07)
# --------------------------------------------------------------------------------------------------
def label_maps(dataset) -> dict[str, tuple]:
    """``{name: (label1, label2)}`` uint8 of an ``SCDDataset`` (chapters 06, 07)."""
    return {name: dataset.raw(i)[2:] for i, name in enumerate(dataset.names)}


def predict_maps(model, dataset, text_features=None, device="cpu", batch_size: int = 8) -> dict[str, tuple]:
    """``{name: (pred1, pred2)}`` uint8 index maps of a model on an ``SCDDataset`` (chapters 06, 07):
    ``pred_k = argmax(sem_k) × (sigmoid(change) > 0.5)`` (`textscd_lib.model.predict`). ``text_features``
    (a `TextFeatures`) is looked up by pair name; Baseline ignores it."""
    import torch

    from textscd_lib.model import predict

    model = model.to(device).eval()
    out: dict[str, tuple] = {}
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            names = [it["name"] for it in items]
            x1 = torch.stack([it["im1"] for it in items]).to(device)
            x2 = torch.stack([it["im2"] for it in items]).to(device)
            F_text = mask = None
            if text_features is not None:
                F_text, mask = (t.to(device) for t in text_features.lookup(names))
            p1, p2 = (p.to(torch.uint8).cpu().numpy() for p in predict(model(x1, x2, F_text, mask)))
            out.update({n: (p1[k], p2[k]) for k, n in enumerate(names)})
    return out


def text_features_for(run_path, encoder_name: str, source: str, captions: Mapping[str, str], encoder=None):
    """`TextFeatures` of a caption set (chapters 06, 07): the run's cache
    ``cache/text_features/<encoder>__<source>.pt`` when it holds exactly these captions, else built with
    ``encoder`` (a `TextEncoder`, or a zero-argument function returning one, called only when needed)."""
    from pathlib import Path

    from textscd_lib.text_features import TextFeatures, build_text_features

    path = Path(run_path) / "cache" / "text_features" / f"{encoder_name}__{source}.pt"
    if path.is_file():
        try:
            tf = TextFeatures.load(path)
            if tf.encoder_name == encoder_name and all(
                    n in tf.index and tf.texts[tf.index[n]] == c for n, c in captions.items()):
                return tf
        except ValueError:
            pass
    if encoder is None:
        raise ValueError(f"{path}: no cached features for these captions and no text encoder to build them")
    enc = encoder() if callable(encoder) and not hasattr(encoder, "encode") else encoder
    if enc.name != encoder_name:
        raise ValueError(f"text encoder {enc.name!r} given, but the model was trained with {encoder_name!r}")
    return build_text_features(enc, dict(captions), path)
