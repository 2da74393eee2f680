"""textscd_lib — the library behind the TextSCD course notebooks.

Each module holds one idea of the paper "TextSCD: Leveraging Text-based Semantic Guidance for Remote
Sensing Image Semantic Change Detection" and names the chapter (notebook) that teaches it. The folders are
the paper's parts, and each imports only the ones listed before it (checked by import-linter, `make lint`):

    common/    atomic writes, paths (results root), run folders and substitutes, device
    data/      SECOND format, validation, preparation, mini-SECOND, decoded cache, dataset   (chapter 01)
    text/      caption store, Gemini and offline sources, tokens, text encoders, features      (chapters 02-03)
    models/    Siamese ResNet34 eq. (3)-(4), TGI eq. (6)-(7), decoder eq. (8), losses eq. (9)-(12)  (03-05)
    metrics    confusion, OA, mIoU, SeK, F_scd                                                  (chapter 06)
    engine/    trainer, checkpoints, batches, predictions                                        (chapter 05)
    analysis/  error maps and records, figures, caption ablation, attention maps                 (06-07)
    course/    the papermill series runner, environment report                                   (chapter 00)
    perf/      benchmarks, cost model, step profiler (nothing but the CLI depends on it)
    cli/       the ``textscd`` command
"""

__version__ = "0.2.0"
