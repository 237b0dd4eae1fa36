"""Whether a recurrent module's T-token call is its T one-token steps, asked of torch before export.

A recurrent bundle feeds a prompt in one call and then steps, which is right only where the
module's sequence path computes what T of its steps do. An adapter that pins its one-token path
(transformers' Mamba2 given a cache position past the kernel) still runs at T > 1 and broadcasts
to something else: every exporter then keeps time dynamic and parity passes, torch and the graph
agreeing on the same wrong prompt path. So torch runs the parity rollout's prompt both ways first,
from the empty state: in one call, and one token per call.
"""

from __future__ import annotations

import numpy as np

from edgekit.bundle.io import TIME
from edgekit.exporters.check import rollout_start
from edgekit.exporters.plan import Plan
from edgekit.parity import error_line
from edgekit.reference.torch_backend import TorchBackend

# how far the two paths must part to be two different computations: ten times the export's
# tolerance, and never less than 1e-3 of the tensor's size, so a tight --atol does not read
# torch's own reordering noise between them (~1e-6 of the size) as a difference; a pinned step
# run at T > 1 parts by the size itself (Mamba2's logits: 1.4x)
CLEAR, FLOOR = 10.0, 1e-3


def sequence_is_not_steps(plan: Plan, atol: float, rtol: float) -> str | None:
    """None where torch's prompt in one call gives the logits and state of feeding it one token
    per call (within CLEAR times atol + rtol * the tensor's own size, or FLOOR times that size);
    else why not, in one line."""
    contract = plan.contract
    time = contract.role_axis(TIME)
    if time is None or contract.axes[time].min > 1:  # no one-token call to compare with
        return None
    prompt, context, _ = rollout_start(plan, np.random.default_rng(1234), 0)
    most = (contract.most(TIME), contract.max_positions)
    length = min([prompt.shape[1], *(m for m in most if m is not None)])
    if length < 2:
        return None
    prompt = prompt[:, :length]
    reference = TorchBackend(plan.module, contract)
    ran = []
    for pieces in ([prompt], [prompt[:, t : t + 1] for t in range(length)]):
        stepper = reference.stepper(1)
        if context:
            stepper.set_context(context)
        try:
            logits = [np.array(stepper.prefill(piece)) for piece in pieces][-1]
        except Exception as exc:  # the module cannot take the prompt this way
            way = "in one call" if len(pieces) == 1 else "one token per call"
            return f"the module fails on a {length}-token prompt fed {way} ({error_line(exc)})"
        ran.append({contract.layout().logits.name: logits, **stepper.get_state()})
    once, stepped = ran
    for name, want in stepped.items():
        gap = float(np.abs(once[name] - want).max())
        size = float(np.abs(want).max())
        if not gap <= max(CLEAR * (atol + rtol * size), FLOOR * size):  # NaN parts them too
            return (
                f"its {length}-token call is not {length} one-token calls: {name} differs by "
                f"{gap:.3g} where it reaches {size:.3g}, so its sequence path does not compute "
                "what its step does"
            )
    return None
