"""OpenVINO stepping with the state inside the runtime: the form OpenVINO steps fastest in.

The one-token graph is reshaped to static shapes (B streams, T = 1) and made stateful
(`apply_make_stateful_transformation`: each state input/output pair becomes a variable the infer
request keeps between calls), as OpenVINO's own recurrent and LLM pipelines run. A step is one
`infer()` with the token and logits tensors bound once (shared with this object's numpy buffers):
no state crosses the API per step. `get_state` / `set_state` read and write the variables, so
sessions save and restore as on every backend; a prompt longer than one token runs on the
dynamic-shape graph with the state explicit and is written back into the variables after.
The explicit two-buffer stepper (openvino.OpenVinoStepper) stays for OpenVINO builds without the
transformation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgekit.bundle.io import TIME
from edgekit.errors import InputError
from edgekit.runtimes.stepper import StepBuffers, checked_state, prefill_chunks


def make_stateful() -> Any:
    """OpenVINO's transformation, or None where this build lacks it."""
    try:
        from openvino._offline_transformations import apply_make_stateful_transformation
    except ImportError:
        return None
    return apply_make_stateful_transformation


class StatefulOpenVinoStepper(StepBuffers):
    """B streams stepped on a static, stateful compile of the bundle's one-token graph."""

    def __init__(self, backend: Any, batch: int, compiled: Any) -> None:
        super().__init__(backend.layout, batch)  # context, growing state: refused by stepper()
        import openvino as ov

        self.backend = backend
        self.request = compiled.create_infer_request()
        tensor = ov.Tensor
        self.request.set_tensor(self.layout.tokens.name, tensor(self.tokens, shared_memory=True))
        self.request.set_tensor(self.layout.logits.name, tensor(self.logits, shared_memory=True))
        # each variable is named by its pair (input name then output name, as the transformation
        # names it); matched here so get/set speak the bundle's state input names
        variables = {v.name: v for v in self.request.query_state()}
        self.variables = {}
        for name_in, name_out in self.layout.pairs:
            found = variables.get(name_in + name_out) or variables.get(name_in)
            if found is None:
                raise InputError(
                    f"OpenVINO made no state variable for {name_in} -> {name_out} "
                    f"(it made {sorted(variables)})"
                )
            self.variables[name_in] = found
        self.reset()

    def step(self) -> np.ndarray:
        self.request.infer()
        return self.next_logits

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        """Feed (B, T) token ids: T = 1 pieces as steps, longer ones on the dynamic-shape graph
        with the state explicit (then written back); return logits (B, V)."""
        for piece in prefill_chunks(ids, self.batch, self.layout.contract.most(TIME)):
            if piece.shape[1] == 1:
                self.next_tokens[:] = piece[:, 0]
                self.step()
                continue
            feeds = {self.layout.tokens.name: self.layout.token_feed(piece), **self.get_state()}
            out = self.backend.run(feeds)
            self.set_state(self.layout.state_after(out))
            self.next_logits[...] = self.layout.last_logits(out[self.layout.logits.name])
        return self.next_logits

    def get_state(self) -> dict[str, np.ndarray]:
        return {name: np.array(v.state.data, np.float32) for name, v in self.variables.items()}

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        import openvino as ov

        for name, value in checked_state(state, self.state_shapes).items():
            self.variables[name].state = ov.Tensor(np.array(value, np.float32))

    def reset(self) -> None:
        self.set_state(self.layout.zero_state(self.batch))
