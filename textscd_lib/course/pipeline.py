"""The stages chained for the notebooks (chapters 05 and 07): data -> captions -> text features -> train ->
predictions, in one call.

Each stage is also a library function and a ``textscd`` subcommand with explicit inputs and outputs
(``textscd_lib.engine.stages``); :func:`train_pipeline` only makes the inputs the trainer is given, in the run
folder, exactly as the chapters before it do:

1. data: ``DATA_ROOT`` -> a checked folder (``""`` = the embedded mini-SECOND, generated on first use;
   ``textscd_lib.data.synthetic.resolve_data_root``, which records the data part of the run);
2. captions: the run's caption store ``results/<run>/captions/<source>.jsonl`` drawn with the run's seed
   (``ensure_captions``, which records the captions part), TextSCD only;
3. text features: ``results/<run>/cache/text_features/<encoder>__<source>.pt`` (reused when chapter 03 made it
   from the same captions), TextSCD only;
4. train (``textscd_lib.engine.trainer.train``) with those inputs;
5. predictions of the best model on val in the SECOND layout, ``results/<run>/predictions/<model>/val``
   (``textscd_lib.engine.stages.predict_to_folder``), when asked and the run has finished.
"""

from __future__ import annotations

from dataclasses import replace

from textscd_lib.common.io import atomic_write_json
from textscd_lib.common.runs import read_substitutes, run_dir
from textscd_lib.data.synthetic import resolve_data_root
from textscd_lib.engine.config import TrainConfig
from textscd_lib.engine.stages import make_text_features, predict_to_folder
from textscd_lib.engine.trainer import train
from textscd_lib.text.captions import ensure_captions
from textscd_lib.text.encoder import load_text_encoder
from textscd_lib.text.features import features_path

__all__ = ["prepare_inputs", "train_pipeline"]


def prepare_inputs(cfg: TrainConfig, fast: bool = False) -> TrainConfig:
    """``cfg`` with its inputs made: ``data_root`` a checked folder and, for TextSCD without given features,
    ``text_features`` the run's feature file of ``cfg.captions`` (made if missing). ``fast``: an empty
    ``data_root`` means the tiny FAST mini-SECOND (the notebooks' ``FAST``) rather than the full one. Records
    the data and captions parts of the run as the chapters do."""
    run_path = run_dir(cfg.run, cfg.results_root)
    root = resolve_data_root(cfg.data_root, fast, run_path)
    if cfg.model == "baseline" or cfg.text_features:
        return replace(cfg, data_root=str(root))
    # the run's seed draws the offline captions (oracle wording, noise, shuffle), as chapters 02, 06 and 07 do
    store = ensure_captions(root, cfg.captions, run_path, seed=cfg.seed)
    encoder = load_text_encoder(cfg.text_encoder, device="cpu")
    path = features_path(run_path, encoder.name, cfg.captions)
    make_text_features(store, path, encoder, source=cfg.captions,
                       captions_record=read_substitutes(run_path).get("captions"))
    return replace(cfg, data_root=str(root), text_features=str(path))


def train_pipeline(cfg: TrainConfig, export: bool = True, fast: bool = False) -> dict:
    """Make the inputs (:func:`prepare_inputs`, ``fast`` as there), train, and (``export``) write the best
    model's val predictions in the SECOND layout with the precision validation used; returns the trainer's
    result, with ``paths['predictions']`` when exported."""
    given = prepare_inputs(cfg, fast)
    result = train(given)
    finished = bool(result["history"]) and result["history"][-1]["epoch"] == given.epochs
    if export and finished and result["rank"] == 0:
        run_path = run_dir(given.run, given.results_root)
        out = run_path / "predictions" / given.model / "val"
        predict_to_folder(result["paths"]["best"], given.data_root, out, given.text_features, split="val",
                          device=result["device"], batch_size=given.batch_size, precision=result["precision"])
        result["paths"]["predictions"] = str(out)
        atomic_write_json(run_path / "metrics" / f"train_{given.model}.json",
                          {k: v for k, v in result.items() if k != "shard"})
    return result
