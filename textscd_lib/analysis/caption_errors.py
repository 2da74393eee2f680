"""Which classes a caption names, and how wrong the transitions it names come out: chapter 06 (metrics and
error analysis); the caption vocabulary also serves chapters 02 (caption generation) and 07 (caption ablation).

- :data:`CLASS_WORDS` — synonyms of each SECOND class ("houses" → building, "lawn" → low vegetation, …).
- :func:`classes_mentioned` / :func:`transition_mention` — does a caption name the classes of a true
  from→to transition (negated changes such as "no obvious changes in buildings" do not count)?
- :func:`transition_errors` / :func:`error_summary` — one row per (tile, true transition) with the share of
  its pixels predicted wrong (`textscd_lib.analysis.errors.error_map`), and those rows pooled by transition or by
  what the caption names: do errors sit where the caption is silent?
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from textscd_lib.analysis.errors import CORRECT_CHANGE, MISS, WRONG_CLASS, error_map
from textscd_lib.data.second import CLASSES
from textscd_lib.metrics import to_numpy

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
    """Class names (from `CLASSES`) that a caption mentions through :data:`CLASS_WORDS` (chapters 02, 06, 07).

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
    """How a caption covers the transition ``from_cls → to_cls`` (chapters 02, 06, 07): "both", "from only",
    "to only" or "neither" of the two class names is mentioned."""
    found = classes_mentioned(caption)
    f, t = from_cls in found, to_cls in found
    return "both" if f and t else "from only" if f else "to only" if t else "neither"


# --------------------------------------------------------------------------------------------------
# caption vs error: which transitions, and which caption situations, hold the errors?
# --------------------------------------------------------------------------------------------------
def transition_errors(names: Sequence[str], preds: Mapping[str, tuple], labels: Mapping[str, tuple],
                      captions: Mapping[str, str] | None = None, min_pixels: int = 1) -> pd.DataFrame:
    """One row per (tile, true transition a→b): its pixels, how the caption covers it, and how its pixels
    were predicted (chapter 06): ``error`` (not exactly a→b), ``miss`` (no change predicted),
    ``wrong class`` (change predicted, classes wrong)."""
    captions = captions or {}
    rows = []
    for name in names:
        p1, p2 = (to_numpy(x).astype(np.int64) for x in preds[name])
        l1, l2 = (to_numpy(x).astype(np.int64) for x in labels[name])
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
