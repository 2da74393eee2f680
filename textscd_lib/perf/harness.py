"""What every benchmark shares: the configuration, the device name, a synchronised timer, one batch of
random step inputs and a freshly built model with the trainer's SGD (``textscd bench`` and ``--parts``;
chapter 05 and the appendix on GPU performance)."""

from __future__ import annotations

import platform
import re
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch

from textscd_lib.common.device import pick_device
from textscd_lib.engine.cudnn import cudnn_benchmark
from textscd_lib.models.kinds import KINDS
from textscd_lib.models.losses import total_loss
from textscd_lib.models.textscd import TextSCD
from textscd_lib.perf.variants import MaskOnceTextSCD, fast_cosine_total_loss


@dataclass
class BenchConfig:
    device: str = "auto"
    size: int = 512
    batch: int = 8
    precision: str = "auto"        # auto = bf16 on CUDA, fp32 on CPU
    channels_last: str = "auto"    # auto = on for CUDA
    compile: bool = False
    cuda_graphs: bool = False      # also time the step replayed as one captured CUDA graph
    models: tuple[str, ...] = tuple(reversed(KINDS))  # Baseline first, then TextSCD
    text_dim: int = 512            # CLIP ViT-B-16 width; the text features are cached, so only D_t matters
    warmup: int = 3
    repeats: int = 10
    data_root: str = ""            # for the loading case; "" = skip unless given
    out_dir: str = "results/benchmarks"
    # each change of the fast path, on or off, so that its effect is two runs differing in one switch
    # (defaults = the library's own path; the old paths are rebuilt in perf/variants.py)
    tail: str = "paper"            # the decoders' tail (textscd_lib.models.textscd.TAILS)
    cudnn_benchmark: bool = True   # torch.backends.cudnn.benchmark on CUDA (static shapes)
    mask_once: bool = False        # True: MaskOnceTextSCD, the text mask made once, not at each TGI level
    host_syncs: bool = False       # True: the old step's host syncs (loss .tolist(); --pipeline: per-batch copies)
    fast_cosine: bool = False      # True: L_sim's cosine written out (rounding differs; never in training)
    pipeline: bool = False         # also time the step fed by the trainer's batches (augmentation, text lookup)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu-{platform.machine()}-{torch.get_num_threads()}threads"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], None], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Seconds per call of ``fn`` after ``warmup`` untimed calls, the device synchronised before each clock
    reading (also the wall time ``bench --parts`` compares its profile with)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


@dataclass
class StepInputs:
    """One batch of random inputs in the bench's shape and format, on its device (shared with ``--parts``)."""
    device: torch.device
    bf16: bool
    channels_last: bool
    x1: torch.Tensor
    x2: torch.Tensor
    f_text: torch.Tensor
    mask: torch.Tensor
    batch: dict

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self, cache_enabled: bool = True):
        """bf16 autocast on the bench's device, or nothing for fp32."""
        if not self.bf16:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=cache_enabled)


def step_inputs(cfg: BenchConfig) -> StepInputs:
    """Random images, cached text features (30 of 50 tokens real) and labels for ``cfg`` (seeded)."""
    device = pick_device(cfg.device)
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    cl = cfg.channels_last == "on" or (cfg.channels_last == "auto" and device.type == "cuda")
    fmt = torch.channels_last if cl else torch.contiguous_format
    g = torch.Generator().manual_seed(0)
    b, s = cfg.batch, cfg.size
    x1 = torch.randn(b, 3, s, s, generator=g).to(device, memory_format=fmt)
    x2 = torch.randn(b, 3, s, s, generator=g).to(device, memory_format=fmt)
    f_text = torch.randn(b, 50, cfg.text_dim, generator=g).to(device)
    mask = torch.ones(b, 50, dtype=torch.bool)
    mask[:, 30:] = False
    label1 = torch.randint(0, 7, (b, s, s), generator=g)
    label2 = torch.where(label1 > 0, torch.randint(1, 7, (b, s, s), generator=g), 0)
    batch = {"label1": label1.to(device), "label2": label2.to(device), "change": (label1 > 0).float().to(device)}
    return StepInputs(device, bf16, cl, x1, x2, f_text, mask.to(device), batch)


@contextmanager
def set_fast_path(cfg: BenchConfig, device: torch.device):
    """Set the process-wide switches of ``cfg`` for the block (cudnn.benchmark on CUDA, restored on exit) and
    yield the record every row carries: the switches it was measured with."""
    cuda = device.type == "cuda"
    with cudnn_benchmark(cfg.cudnn_benchmark) if cuda else nullcontext():
        yield {"tail": cfg.tail, "cudnn_benchmark": cfg.cudnn_benchmark and cuda, "mask_once": cfg.mask_once,
               "host_syncs": cfg.host_syncs, "fast_cosine": cfg.fast_cosine}


def bench_model(kind: str, cfg: BenchConfig, inp: StepInputs):
    """A freshly built, randomly initialised model on the bench's device and memory format, in train mode,
    with the trainer's SGD (shared by the throughput cases and ``--parts``); ``mask_once=True`` builds the
    mask-once variant (same weights, same numbers)."""
    cls = MaskOnceTextSCD if cfg.mask_once else TextSCD
    model = cls(kind=kind, text_dim=cfg.text_dim, weights=None, tail=cfg.tail).to(
        inp.device, memory_format=inp.memory_format)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    return model.train(), opt


def bench_loss(cfg: BenchConfig) -> Callable:
    """The step's loss: the library's ``total_loss``, or its written-out-cosine variant for ``fast_cosine``."""
    return fast_cosine_total_loss if cfg.fast_cosine else total_loss
