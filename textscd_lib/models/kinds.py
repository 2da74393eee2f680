"""The model kinds of chapter 05's Table 1 (no torch here: the command line lists them without importing it)."""

KINDS: tuple[str, ...] = ("textscd", "baseline")  # TextSCD, and the same network without TGI (the paper's Baseline)
TAILS: tuple[str, ...] = ("paper", "narrow", "stride4")  # the decoders' tail after stride 4 (models/textscd.py)
