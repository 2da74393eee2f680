"""The metric maths of semantic change detection: OA, mIoU, SeK, F_scd (chapter 06; validation in chapter 05).

Every number comes from ONE 7×7 confusion matrix ``H`` over both dates' maps of every pair (the SECOND
reference protocol, docs/facts.md#metrics): ``H[p, g]`` counts pixels predicted ``p`` with ground truth ``g``, summed
over pred1 vs label1 and pred2 vs label2. Class 0 is "unchanged".

- OA    = trace(H) / sum(H)
- mIoU  = (IoU_nc + IoU_c) / 2 with TN = H[0,0], TP = sum of H[p,g] over p≥1, g≥1,
          IoU_nc = TN / (sum(H) − TP), IoU_c = TP / (sum(H) − TN)
- SeK   = κ(Q) · exp(IoU_c) / e, Q = H with Q[0,0] = 0, κ = 0 when sum(Q) = 0 or pe = 1
- F_scd = harmonic mean of P = Σ_{k≥1} H[k,k] / #predicted changed and R = Σ_{k≥1} H[k,k] / #labelled changed

The matrix is accumulated on the fly (on the GPU when the maps are there, without a host sync per batch);
nothing keeps a list of predictions. Where the definition divides by zero the score is NaN, and
``scores()["nan_reasons"]`` says why — a NaN is reported, never hidden.

Some toolboxes (torchange) compute a "SeK" over a 37-class from→to confusion instead (unchanged + 6×6
transitions, a pixel right only when both dates are): :func:`scores_from_transitions`, labelled as such; its
numbers are not comparable with the SECOND protocol's. A change-only method is scored on the 2×2 change
confusion (:func:`change_confusion`, :func:`scores_from_change_masks`), its semantic scores not applicable.

Only arrays and tensors come in here; reading prediction folders is `textscd_lib.metrics.folders`. torch is
imported only when :class:`SCDConfusion` accumulates (on the GPU or not), so scoring matrices — ``textscd
errors`` and ``textscd evaluate`` on a binary folder — starts without it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from textscd_lib.data.second import CLASSES, NUM_CLASSES

if TYPE_CHECKING:          # torch is imported where a confusion is accumulated, not to score a matrix
    import torch

METRIC_COLUMNS = ("F_scd", "mIoU", "OA", "SeK")  # the paper's column order; its "F1" is F_scd


def to_numpy(a) -> np.ndarray:
    """Torch tensor or array-like → numpy, no copy for numpy (chapters 06, 07: maps come either way)."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)



def _as_long_tensor(x, device: torch.device | None) -> torch.Tensor:
    import torch

    t = torch.as_tensor(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if device is not None and t.device != device:
        t = t.to(device)
    return t.reshape(-1).long()


def _check_range(t: torch.Tensor, n: int, what: str) -> None:
    """Values outside 0..n-1 would silently land in the wrong cell; check where it costs no GPU sync."""
    if t.device.type == "cpu" and t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
        raise ValueError(f"{what}: values must lie in 0..{n - 1}, found {int(t.min())}..{int(t.max())}")


def _count(counts: torch.Tensor, idx: torch.Tensor) -> None:
    """counts += bincount(idx); on CUDA through index_add_ (torch.bincount syncs to find the max)."""
    import torch

    if idx.device.type == "cpu":
        counts += torch.bincount(idx, minlength=counts.numel())
    else:
        counts.index_add_(0, idx, torch.ones(1, dtype=counts.dtype, device=idx.device).expand(idx.numel()))


class SCDConfusion:
    """The 7×7 confusion matrix ``H[pred, gt]`` over both dates (chapter 06, docs/facts.md#metrics).

    ``update`` takes torch tensors (any device) or numpy arrays of any batch shape; the counts stay on the
    device of the first update until ``.matrix`` or ``.scores()`` is read."""

    def __init__(self, num_classes: int = NUM_CLASSES, device: torch.device | str | None = None) -> None:
        import torch

        self.num_classes = num_classes
        self.device = torch.device(device) if device is not None else None
        self._counts: torch.Tensor | None = None

    def update(self, pred1, pred2, label1, label2) -> None:
        """Add both dates of a batch: pred1 vs label1 and pred2 vs label2 (same shapes)."""
        for pred, label, date in ((pred1, label1, 1), (pred2, label2, 2)):
            self.update_one(pred, label, what=f"date {date}")

    def update_one(self, pred, label, what: str = "map") -> None:
        """Add one date's maps (``pred`` vs ``label``)."""
        import torch

        p = _as_long_tensor(pred, self.device)
        g = _as_long_tensor(label, p.device)
        if p.shape != g.shape:
            raise ValueError(f"{what}: prediction has {p.numel()} pixels but the label has {g.numel()}")
        n = self.num_classes
        _check_range(p, n, f"{what} prediction")
        _check_range(g, n, f"{what} label")
        if self._counts is None:
            self.device = p.device
            self._counts = torch.zeros(n * n, dtype=torch.int64, device=p.device)
        _count(self._counts, p * n + g)

    def merge(self, other: SCDConfusion | np.ndarray | torch.Tensor) -> None:
        """Add another matrix (e.g. the sum over DDP ranks)."""
        import torch

        m = other.matrix if isinstance(other, SCDConfusion) else np.asarray(torch.as_tensor(other).cpu())
        self.add_matrix(m)

    def add_matrix(self, m) -> None:
        import torch

        m = torch.as_tensor(np.asarray(m, dtype=np.int64)).reshape(-1)
        if self._counts is None:
            self._counts = torch.zeros_like(m, device=self.device or "cpu")
        self._counts += m.to(self._counts.device)

    @property
    def counts(self) -> torch.Tensor:
        """The flat counts on their device (for all_reduce without leaving the GPU)."""
        import torch

        if self._counts is None:
            self._counts = torch.zeros(self.num_classes ** 2, dtype=torch.int64, device=self.device or "cpu")
        return self._counts

    @property
    def matrix(self) -> np.ndarray:
        """H as a (7, 7) int64 numpy array, rows = prediction, columns = ground truth."""
        return self.counts.cpu().numpy().reshape(self.num_classes, self.num_classes).copy()

    def scores(self) -> dict:
        """OA, mIoU, SeK, F_scd (fractions) and the rest, see :func:`scores_from_confusion`."""
        return scores_from_confusion(self.matrix)


def _div(num: float, den: float) -> float:
    return num / den if den != 0 else float("nan")


def scores_from_confusion(H) -> dict:
    """OA, mIoU, SeK, F_scd and their parts from a 7×7 confusion matrix H[pred, gt] (chapter 06, docs/facts.md#metrics).

    Returns fractions (papers print ×100). Keys: OA, mIoU, SeK, F_scd, IoU_nc, IoU_c, kappa, P_scd, R_scd,
    pixels, per_class_IoU (dict by class name), nan_reasons (dict metric -> why it is NaN; empty when none)."""
    H = np.asarray(H, dtype=np.int64)
    if H.ndim != 2 or H.shape[0] != H.shape[1] or H.shape[0] < 2:
        raise ValueError(f"confusion matrix must be square (k, k) with k >= 2, got shape {H.shape}")
    if (H < 0).any():
        raise ValueError("confusion matrix has negative counts")
    Hi = [[int(v) for v in row] for row in H.tolist()]  # exact integers (no overflow on big runs)
    k = len(Hi)
    total = sum(map(sum, Hi))
    diag = sum(Hi[i][i] for i in range(k))
    tn = Hi[0][0]
    tp = sum(Hi[p][g] for p in range(1, k) for g in range(1, k))  # changed in both, whatever class
    reasons: dict[str, str] = {}

    oa = _div(diag, total)
    if total == 0:
        reasons["OA"] = "the confusion matrix is empty (no pixels scored)"
    iou_nc = _div(tn, total - tp)
    iou_c = _div(tp, total - tn)
    if total - tn == 0:
        reasons["IoU_c"] = "no pixel is changed in the prediction or in the ground truth (IoU_c = 0/0)"
    if total - tp == 0:
        reasons["IoU_nc"] = "every pixel is changed in both prediction and ground truth (IoU_nc = 0/0)"
    miou = (iou_nc + iou_c) / 2
    if math.isnan(miou):
        reasons["mIoU"] = "; ".join(reasons.get(x, "") for x in ("IoU_nc", "IoU_c") if x in reasons)

    # SeK: kappa over Q = H without the unchanged/unchanged cell (exact integer arithmetic for pe == 1)
    q_total = total - tn
    rows = [sum(Hi[i]) - (tn if i == 0 else 0) for i in range(k)]
    cols = [sum(Hi[p][i] for p in range(k)) - (tn if i == 0 else 0) for i in range(k)]
    pe_num = sum(r * c for r, c in zip(rows, cols))
    if q_total == 0 or pe_num == q_total * q_total:
        kappa = 0.0
    else:
        po = (diag - tn) / q_total
        pe = pe_num / (q_total * q_total)
        kappa = (po - pe) / (1 - pe)
    sek = kappa * math.exp(iou_c) / math.e
    if math.isnan(sek):
        reasons["SeK"] = "SeK = kappa * exp(IoU_c) / e and IoU_c is NaN: " + reasons["IoU_c"]

    # F_scd: precision and recall of the class over changed pixels
    label_changed = total - sum(Hi[p][0] for p in range(k))
    p_scd, r_scd, f_scd = _f_scd(diag - tn, total - sum(Hi[0]), label_changed, reasons)
    return {"OA": oa, "mIoU": miou, "SeK": sek, "F_scd": f_scd, "IoU_nc": iou_nc, "IoU_c": iou_c,
            "kappa": kappa, "P_scd": p_scd, "R_scd": r_scd, "pixels": total,
            "per_class_IoU": dict(zip(_names(k), per_class_iou(H).tolist())), "nan_reasons": reasons}


def _f_scd(sc_tp: int, pred_changed: int, label_changed: int, reasons: dict) -> tuple[float, float, float]:
    """P_scd, R_scd and F_scd (their harmonic mean) from the pixels changed and right, predicted changed and
    labelled changed; a NaN's reason goes into ``reasons["F_scd"]``."""
    p_scd = _div(sc_tp, pred_changed)
    r_scd = _div(sc_tp, label_changed)
    if math.isnan(p_scd) or math.isnan(r_scd):
        why = []
        if pred_changed == 0:
            why.append("nothing is predicted changed (precision = 0/0)")
        if label_changed == 0:
            why.append("nothing is labelled changed (recall = 0/0)")
        reasons["F_scd"] = "; ".join(why)
        return p_scd, r_scd, float("nan")
    if p_scd == 0 or r_scd == 0:
        return p_scd, r_scd, 0.0  # harmonic mean with a zero term (scipy.stats.hmean convention)
    return p_scd, r_scd, 2 * p_scd * r_scd / (p_scd + r_scd)


def _names(k: int) -> list[str]:
    return list(CLASSES) if k == len(CLASSES) else [str(i) for i in range(k)]


def per_class_iou(H) -> np.ndarray:
    """IoU_k = H[k,k] / (row_k + col_k − H[k,k]) for each class (NaN for a class absent from both)."""
    H = np.asarray(H, dtype=np.float64)
    inter = np.diag(H)
    union = H.sum(0) + H.sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), np.nan)


class TransitionConfusion:
    """from→to transition confusion (chapter 06): each pixel's (label1, label2) pair against (pred1, pred2).

    A transition is coded ``from * 7 + to``; (0, 0) is "unchanged". ``.matrix`` is (49, 49) int64 with rows =
    predicted transition, columns = true transition. Accumulated like :class:`SCDConfusion`."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        self.num_classes = num_classes
        self._conf = SCDConfusion(num_classes ** 2)

    def update(self, pred1, pred2, label1, label2) -> None:
        n = self.num_classes
        p1, p2 = _as_long_tensor(pred1, None), _as_long_tensor(pred2, None)
        g1, g2 = (_as_long_tensor(x, p1.device) for x in (label1, label2))
        for t, what in ((p1, "pred1"), (p2, "pred2"), (g1, "label1"), (g2, "label2")):
            _check_range(t, n, what)
        self._conf.update_one(p1 * n + p2.to(p1.device), g1 * n + g2, what="transition")

    @property
    def matrix(self) -> np.ndarray:
        return self._conf.matrix

    def change_types(self, partial: str = "raise") -> np.ndarray:
        """The (37, 37) change-type confusion for :func:`scores_from_transitions` (see :func:`transition_codes`)."""
        return _transitions_49_to_37(self.matrix, self.num_classes, partial)

    def label(self, code: int) -> str:
        """'water→building' for a transition code; 'unchanged' for (0, 0)."""
        names = _names(self.num_classes)
        a, b = divmod(int(code), self.num_classes)
        return "unchanged" if a == b == 0 else f"{names[a]}→{names[b]}"

    def top_confusions(self, k: int = 10, errors_only: bool = True) -> list[dict]:
        """The k largest cells as dicts {true, predicted, pixels, share_of_true}, biggest first."""
        M = self.matrix
        col = M.sum(0)
        cells = [(int(M[p, g]), p, g) for p, g in zip(*np.nonzero(M)) if not (errors_only and p == g)]
        cells.sort(key=lambda c: (-c[0], c[2], c[1]))
        return [{"true": self.label(g), "predicted": self.label(p), "pixels": n,
                 "share_of_true": n / col[g] if col[g] else float("nan")} for n, p, g in cells[:k]]


# The 37-class change-type convention (torchange and its descendants): NOT the SECOND protocol above.
NUM_CHANGE_TYPES = 1 + (NUM_CLASSES - 1) ** 2  # 37: unchanged + every from→to pair of the 6 land covers
PARTIAL_POLICIES = ("raise", "unchanged")


def change_type_names(num_classes: int = NUM_CLASSES) -> list[str]:
    """'unchanged', then 'water→water', 'water→ground', ... in code order (code 1 + 6·(c1−1) + (c2−1))."""
    names = _names(num_classes)[1:]
    return ["unchanged"] + [f"{a}→{b}" for a in names for b in names]


def transition_codes(pred1, pred2, partial: str = "raise", num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Per-pixel change-type code of a pair of maps: 0 where both dates are 0 (unchanged), else
    ``1 + 6·(c1 − 1) + (c2 − 1)`` (the 37-class from→to convention; 'building→building' is a code too).

    A pixel where exactly one date is 0 has no from→to type: ``partial="raise"`` refuses such maps in one
    line (the count), ``partial="unchanged"`` codes them 0. Torch tensors or numpy arrays; returns int64."""
    if partial not in PARTIAL_POLICIES:
        raise ValueError(f"partial must be one of {', '.join(PARTIAL_POLICIES)}, got {partial!r}")
    a, b = to_numpy(pred1).astype(np.int64), to_numpy(pred2).astype(np.int64)
    if a.shape != b.shape:
        raise ValueError(f"date 1 map has shape {a.shape} but date 2 has {b.shape}")
    n = num_classes
    for m, what in ((a, "date 1"), (b, "date 2")):
        if m.size and (m.min() < 0 or m.max() >= n):
            raise ValueError(f"{what}: values must lie in 0..{n - 1}, found {m.min()}..{m.max()}")
    both = (a > 0) & (b > 0)
    odd = int(((a > 0) != (b > 0)).sum())
    if odd and partial == "raise":
        raise ValueError(f"{odd} pixel(s) are class 0 (unchanged) on one date only: no from→to type "
                         "(pass partial='unchanged' to count them unchanged)")
    return np.where(both, 1 + (n - 1) * (a - 1) + (b - 1), 0)


def _transitions_49_to_37(M, num_classes: int, partial: str) -> np.ndarray:
    """Collapse a (from·n + to) × (from·n + to) matrix into the 37 change types (see :func:`transition_codes`)."""
    n = num_classes
    code = transition_codes(*np.divmod(np.arange(n * n), n), partial="unchanged", num_classes=n)
    odd = np.array([(a > 0) != (b > 0) for a, b in zip(*np.divmod(np.arange(n * n), n))])
    M = np.asarray(M, dtype=np.int64)
    bad = int(M[odd].sum() + M[:, odd].sum() - M[np.ix_(odd, odd)].sum())
    if bad and partial == "raise":
        raise ValueError(f"{bad} pixel(s) are class 0 (unchanged) on one date only in the prediction or the "
                         "truth: no from→to type (pass partial='unchanged' to count them unchanged)")
    T = np.zeros((1 + (n - 1) ** 2,) * 2, dtype=np.int64)
    np.add.at(T, (code[:, None], code[None, :]), M)
    return T


def scores_from_transitions(T) -> dict:
    """SeK and its parts over the 37-class from→to confusion ``T[pred, gt]`` (:func:`transition_codes`) —
    the torchange convention, NOT the SECOND protocol's SeK (:func:`scores_from_confusion`, one 7×7 matrix
    over both dates). The numbers are not comparable: here a changed pixel agrees only when BOTH dates'
    classes are right, so this SeK is usually lower.

    Same formulas applied to T: kappa over T with T[0,0] = 0, IoU_c / IoU_nc / mIoU of the binary change
    (unchanged = code 0), SeK = kappa · exp(IoU_c) / e; plus ``Score`` = 0.3·mIoU + 0.7·SeK and ``mIoU_scd``
    = mean IoU over the change types present in the truth (code 0 included). Fractions, like
    :func:`scores_from_confusion`; NaN with a reason in ``nan_reasons`` where a definition divides by zero.
    ``convention`` names the convention so a table can say which SeK it prints."""
    T = np.asarray(T, dtype=np.int64)
    if T.shape != (NUM_CHANGE_TYPES, NUM_CHANGE_TYPES):
        raise ValueError(f"transition confusion must be {NUM_CHANGE_TYPES}×{NUM_CHANGE_TYPES} "
                         f"(unchanged + 6×6 from→to), got shape {T.shape}")
    s = scores_from_confusion(T)
    reasons = s["nan_reasons"]
    ious = per_class_iou(T)
    present = T.sum(0) > 0
    m_scd = float(np.mean(ious[present])) if present.any() else float("nan")
    if not present.any():
        reasons["mIoU_scd"] = "the confusion matrix is empty (no pixels scored)"
    score = 0.3 * s["mIoU"] + 0.7 * s["SeK"]
    if math.isnan(score):
        reasons["Score"] = "Score = 0.3 mIoU + 0.7 SeK and one of them is NaN"
    names = change_type_names()
    return {"SeK": s["SeK"], "kappa": s["kappa"], "IoU_c": s["IoU_c"], "IoU_nc": s["IoU_nc"],
            "mIoU": s["mIoU"], "Score": score, "mIoU_scd": m_scd, "OA": s["OA"], "pixels": s["pixels"],
            "per_type_IoU": {names[i]: float(ious[i]) for i in np.flatnonzero(present)},
            "convention": "37-class from→to change types (torchange); not the SECOND protocol",
            "nan_reasons": reasons}


NOT_APPLICABLE = "not applicable: binary change predictions carry no semantic classes"


def scores_from_change_masks(C) -> dict:
    """Scores of a change-only method from the 2×2 change confusion ``C[pred, gt]`` (0 unchanged, 1 changed):
    IoU_nc, IoU_c and mIoU exactly as the SECOND protocol defines them (they only need the change masks),
    change precision / recall / F1, and OA, SeK, kappa, F_scd, P_scd, R_scd NaN with the reason "not
    applicable" (they need classes). Same keys as :func:`scores_from_confusion` plus ``binary`` = True."""
    C = np.asarray(C, dtype=np.int64)
    s = scores_from_confusion(C)
    reasons = {k: v for k, v in s["nan_reasons"].items() if k in ("IoU_nc", "IoU_c", "mIoU")}
    tp, fp, fn = int(C[1, 1]), int(C[1, 0]), int(C[0, 1])
    prec, rec = _div(tp, tp + fp), _div(tp, tp + fn)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    out = {k: float("nan") for k in ("OA", "SeK", "F_scd", "kappa", "P_scd", "R_scd")}
    reasons.update(dict.fromkeys(out, NOT_APPLICABLE))
    if math.isnan(f1):
        reasons["change_F1"] = "nothing is predicted or labelled changed (F1 = 0/0)"
    out.update({"mIoU": s["mIoU"], "IoU_nc": s["IoU_nc"], "IoU_c": s["IoU_c"], "change_precision": prec,
                "change_recall": rec, "change_F1": f1, "pixels": s["pixels"], "per_class_IoU": {},
                "binary": True, "nan_reasons": reasons})
    return out


def change_confusion(H) -> np.ndarray:
    """The 2×2 change confusion ``C[pred changed, truly changed]`` of a k×k confusion ``H[pred, gt]``: class 0
    is unchanged, every other class changed. For a 7×7 ``H`` over both dates each pixel counts once per date;
    ``IoU_c`` of ``C`` equals ``IoU_c`` of ``H`` (:func:`scores_from_confusion`)."""
    H = np.asarray(H, dtype=np.int64)
    return np.array([[H[0, 0], H[0, 1:].sum()], [H[1:, 0].sum(), H[1:, 1:].sum()]], dtype=np.int64)
