"""How many intra-op threads a one-token step runs on when the caller names none (torch-free)."""

from __future__ import annotations

from pathlib import Path

from edgekit.machine import l2_cache_bytes

# The most streams a one-thread step (step_threads) serves; more run on the default threads. On a
# 2-core Xeon, one thread against two for the 2x256 RNN's fp32 step: 0.85x at 8 streams, 0.82x at
# 16, 1.04x at 32, 1.14x at 64; the LSTM's int8 step: 0.84x at 8, 0.98x at 16, 1.00x at 64.
ONE_THREAD_STREAMS = 16


def step_threads(step_graph: Path) -> int | None:
    """The intra-op threads a one-token step runs on when the caller names none: one where the
    step graph's weights (its file's size) fit in one core's L2 cache, else ONNX Runtime's
    default (None: one thread per physical core). A step that fits in one core is a chain of
    small kernels, and waking a second thread for each costs more than it shares; one that does
    not fit streams its weights from L3 or memory, and each added core brings its own L2 (the
    2x256 LSTM's fp32 step, 3.5 MB, took 2.6-2.9x longer on one core than on two; its int8 step,
    0.9 MB, 0.85x as long on one). A rule on the file and the machine, not a timing: the same bundle
    steps alike on every load of one machine. Steppers of more than ONE_THREAD_STREAMS streams do
    real arithmetic per step and step on the default threads (OrtBackend.step_session_for)."""
    l2 = l2_cache_bytes()
    return 1 if l2 is not None and step_graph.stat().st_size <= l2 else None
