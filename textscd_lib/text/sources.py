"""Offline caption sources: stand-ins for Gemini when no key is available (chapter 02, offline caption sources).

The paper captions every pair with Gemini (§4.1). Without a key, these sources write the same kind of caption
store so that later chapters read them exactly like Gemini's:

* ``oracle`` — the true changes of the synthetic scene log put into words (:func:`describe_changes`), an upper
  bound on caption quality;
* ``noisy`` — oracle captions with a VLM's mistakes (:func:`corrupt_changes`, chapter 07);
* ``shuffled`` / ``empty`` — controls: text that belongs to another pair, or no text (chapter 07);
* ``second-cc`` — the human captions of SECOND-CC (:func:`read_second_cc`).

Each ``*_records`` function returns store records; :func:`textscd_lib.text.captions.caption_dataset` writes them.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

from textscd_lib.data.synthetic import read_scene_log

# How a describer names each class (the oracle varies its wording like a VLM does).
_NOUNS = {
    "water": ("water", "a water body", "a pond"),
    "ground": ("bare ground", "bare soil", "bare land"),
    "low vegetation": ("low vegetation", "grassland", "grass"),
    "tree": ("trees", "tree cover", "a patch of trees"),
    "building": ("buildings", "new buildings", "several houses"),
    "playground": ("a playground", "a sports field", "a playground"),
}
_PLURAL = {"trees", "buildings", "new buildings", "several houses"}
_CLASSES = tuple(_NOUNS)
_NO_CHANGE = ("There are no obvious changes between the two images.",
              "The two images show the same scene with no significant differences.",
              "No noticeable changes in buildings, roads or vegetation can be seen.")


def _amount(area: float) -> str:
    return "a small" if area < 0.02 else "an" if area < 0.08 else "a large" if area < 0.2 else "a very large"


def _place(where: str) -> str:
    where = (where or "").strip()
    if where in ("", "center", "centre", "middle"):
        return "in the center"
    return {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom"}.get(
        where, f"in the {where}")


def _clause(ch: dict, rng) -> str:
    a, b = rng.choice(_NOUNS[ch["from"]]), rng.choice(_NOUNS[ch["to"]])
    amount = _amount(float(ch.get("area", 0.05)))
    wheres = ch.get("wheres", [ch.get("where", "")])
    place = _place(wheres[0]) + (f" and {wheres[1]}" if len(wheres) > 1 else "")
    be = "were" if a in _PLURAL else "was"
    forms = (f"{a} {place} {be} replaced by {b}",
             f"{amount} area of {a} {place} turned into {b}",
             f"{b} replaced {a} {place}",
             f"{a} {place} became {b}",
             f"{a} {place} {be} converted to {b}")
    return rng.choice(forms)


def group_changes(changes: list[dict]) -> list[dict]:
    """Merge the regions of one transition: ``{"from", "to", "area": total, "wheres": [≤ 2 places]}``,
    largest total first (a describer says "buildings replaced grass in the top left and the center")."""
    groups: dict[tuple[str, str], dict] = {}
    for ch in sorted(changes, key=lambda c: -float(c.get("area", 0))):
        g = groups.setdefault((ch["from"], ch["to"]), {"from": ch["from"], "to": ch["to"], "area": 0.0, "wheres": []})
        g["area"] += float(ch.get("area", 0))
        where = "center" if ch.get("where") in ("centre", "middle", "", None) else ch["where"]
        if where not in g["wheres"] and len(g["wheres"]) < 2:
            g["wheres"].append(where)
    return sorted(groups.values(), key=lambda g: -g["area"])


DESCRIBER_VERSION = 3  # bump when the oracle's wording changes: stores made before are rewritten


def describe_changes(changes: list[dict], rng) -> str:
    """One sentence for a list of ``{"from", "to", "area", "where"}`` changes, in the style Gemini answers
    the paper's prompt (chapter 02). Regions of one transition are merged; the three largest transitions are
    named with their places, the rest summarised."""
    if not changes:
        return rng.choice(_NO_CHANGE)
    groups = group_changes(changes)
    clauses = [_clause(g if i == 0 else {**g, "wheres": g["wheres"][:1]}, rng) for i, g in enumerate(groups[:3])]
    text = clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + ", and " + clauses[-1]
    if len(groups) > 3:
        text += ", plus a few smaller changes"
    opener = rng.choice(("", "", "Compared with the first image, ", "In the second image, "))
    text = opener + text
    return text[0].upper() + text[1:] + "."


def _scene_log(data_root: Path) -> dict[str, dict]:

    if not (data_root / "scene_log.jsonl").is_file():
        raise FileNotFoundError(f"{data_root / 'scene_log.jsonl'}: oracle captions need the scene log of a "
                                "synthetic mini-SECOND; for real SECOND use --backend gemini or second-cc")
    return read_scene_log(data_root)


def _rng(seed: int, *keys: str):

    return random.Random(":".join([str(seed), *keys]))  # str seeds are hashed stably (not PYTHONHASHSEED)


def _record(pair, caption: str, backend: str, **extra: Any) -> dict[str, Any]:
    return {"pair": pair.name, "split": pair.split, "caption": caption, "status": "ok", "error": None,
            "source": backend, "backend": backend, "model": None, "prompt": None, **extra}


def oracle_records(data_root: Path, pairs: list, seed: int = 0) -> list[dict[str, Any]]:
    """Oracle captions: the true changes of the scene log put into words — an upper bound on caption
    quality, not a VLM (chapter 02). Deterministic given ``seed``."""
    scenes = _scene_log(data_root)
    missing = [p.name for p in pairs if p.name not in scenes]
    if missing:
        raise ValueError(f"{data_root / 'scene_log.jsonl'}: no entry for {len(missing)} pair(s), e.g. {missing[0]}")
    return [_record(p, describe_changes(scenes[p.name].get("changes", []), _rng(seed, p.name)), "oracle",
                    model="oracle (scene log)") for p in pairs]


def corrupt_changes(changes: list[dict], noise: float, rng) -> tuple[list[dict], list[str]]:
    """Mimic a VLM's mistakes (chapter 07): each change is, with probability ``noise``, omitted or given a
    wrong class (half and half); with probability ``noise`` one invented change is added."""
    out, notes = [], []
    for ch in changes:
        if rng.random() < noise:
            if rng.random() < 0.5:
                notes.append(f"omitted {ch['from']}->{ch['to']}")
                continue
            key = rng.choice(("from", "to"))
            other = "to" if key == "from" else "from"
            wrong = rng.choice([c for c in _CLASSES if c not in (ch[key], ch[other])])
            notes.append(f"swapped {ch[key]}->{wrong} ({key})")
            ch = {**ch, key: wrong}
        out.append(ch)
    if rng.random() < noise:
        a, b = rng.sample(_CLASSES, 2)
        where = rng.choice(("top left", "top right", "bottom left", "bottom right", "center", "top", "bottom"))
        out.append({"from": a, "to": b, "area": round(rng.uniform(0.01, 0.08), 3), "where": where})
        notes.append(f"invented {a}->{b}")
    return out, notes


def noisy_records(data_root: Path, pairs: list, noise: float, seed: int = 0) -> list[dict[str, Any]]:
    """Oracle captions corrupted with probability ``noise`` (:func:`corrupt_changes`); ``noise=0`` gives
    exactly the oracle captions (chapter 07)."""
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must lie in [0, 1], got {noise}")
    scenes = _scene_log(data_root)
    recs = []
    for p in pairs:
        changes, notes = corrupt_changes(scenes[p.name].get("changes", []), noise, _rng(seed, p.name, "noise"))
        recs.append(_record(p, describe_changes(changes, _rng(seed, p.name)), "noisy",
                            model=f"oracle + noise {noise}", corruptions=notes))
    return recs


def shuffled_records(data_root: Path, pairs: list, seed: int = 0) -> list[dict[str, Any]]:
    """Oracle captions given to the wrong pairs: a derangement, so no pair keeps its own text (chapter 07)."""
    oracle = oracle_records(data_root, pairs, seed)
    order = list(range(len(pairs)))
    _rng(seed, "shuffle").shuffle(order)
    donor = {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}
    return [_record(p, oracle[donor[i]]["caption"], "shuffled", model="oracle, permuted",
                    from_pair=pairs[donor[i]].name) for i, p in enumerate(pairs)]


def empty_records(pairs: list) -> list[dict[str, Any]]:
    """The empty caption for every pair: TextSCD without text (chapter 07)."""
    return [_record(p, "", "empty", model="none") for p in pairs]


def read_second_cc(file: Path, sentence: int = 0) -> dict[str, str]:
    """``{pair: caption}`` from a SECOND-CC caption file (chapter 02): the LEVIR-CC / Karpathy JSON layout
    (``{"images": [{"filename", "sentences": [{"raw"}]}]}``), a ``{name: caption or [captions]}`` JSON, or
    JSONL/CSV with ``name``/``caption`` fields. Pair names are file stems."""
    if not file.is_file():
        raise FileNotFoundError(f"{file}: SECOND-CC caption file not found")
    text = file.read_text(encoding="utf-8")

    def pick(caps) -> str:
        caps = [c.get("raw", c.get("caption", "")) if isinstance(c, dict) else str(c) for c in
                (caps if isinstance(caps, list) else [caps])]
        return caps[min(sentence, len(caps) - 1)].strip() if caps else ""

    out: dict[str, str] = {}
    if file.suffix == ".csv":

        for row in csv.DictReader(text.splitlines()):
            out[Path(row["name"]).stem] = row["caption"].strip()
        return out
    try:
        data = json.loads(text)
        rows = data["images"] if isinstance(data, dict) and "images" in data else data
    except json.JSONDecodeError:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(rows, dict):
        return {Path(k).stem: pick(v) for k, v in rows.items()}
    for row in rows:
        name = row.get("filename") or row.get("name") or row.get("pair")
        if name is None:
            raise ValueError(f"{file}: an entry has no filename/name field: {str(row)[:120]}")
        out[Path(name).stem] = pick(row.get("sentences", row.get("captions", row.get("caption", ""))))
    return out


def second_cc_records(file: Path, pairs: list, sentence: int = 0) -> list[dict[str, Any]]:
    """Store records for the pairs that SECOND-CC captions (chapter 02); the others stay missing."""
    caps = read_second_cc(file, sentence)
    recs = [_record(p, caps[p.name], "second-cc", model="human (SECOND-CC)") for p in pairs if p.name in caps]
    if not recs:
        raise ValueError(f"{file}: none of the {len(pairs)} pair names appear in the SECOND-CC file")
    return recs
