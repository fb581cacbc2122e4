"""One optimizer step, eager or replayed from a captured CUDA graph: the only place that calls
backward() and step().

The captured step records everything a step does on the GPU — the PGD steps, both loss forwards,
the loss, backward, the fused SGD step and the post-step BatchNorm forwards — as one CUDA graph,
then replays it with new inputs copied into its static buffers. What stays outside the graph is
what must: the batch (augmented by the caller), the attack's random starts (drawn by the caller
from the epoch's generator, so a resumed or replayed run draws the same numbers) and the learning
rate (a device tensor the caller fills). The outputs are the graph's static tensors: a caller
reads or copies them before the next step, which overwrites them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from ascl.runtime import autocast
from ascl.training.objectives import Networks, Objective, StepOutput

logger = logging.getLogger(__name__)

CAPTURE_WARMUP_STEPS = 2  # eager steps before capture: lazy initialisation, cuDNN plans, momentum buffers


class TrainStep(Protocol):
    @property
    def warmup_steps(self) -> int:
        """How many of the next steps still include one-time work (compilation, capture)."""

    def __call__(self, x: torch.Tensor, y: torch.Tensor, starts: torch.Tensor | None) -> StepOutput: ...


class CloneOutputs(nn.Module):
    """For torch.compile modes with CUDA graphs: their outputs live in memory that the next replay
    overwrites, and a step uses the natural pass's outputs after the adversarial pass has run."""

    def __init__(self, compiled: nn.Module) -> None:
        super().__init__()
        self.compiled = compiled

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, z = self.compiled(x)
        return logits.clone(), z.clone()


@dataclass
class EagerStep:
    nets: Networks
    objective: Objective
    optimizer: torch.optim.Optimizer
    post_step_bn_forwards: bool
    marks_cudagraph_steps: bool  # torch.compile's CUDA graphs need to know where a step begins
    warmup_steps: int = 0

    def __call__(self, x: torch.Tensor, y: torch.Tensor, starts: torch.Tensor | None) -> StepOutput:
        if self.marks_cudagraph_steps:
            torch.compiler.cudagraph_mark_step_begin()
        self.optimizer.zero_grad(set_to_none=True)
        output = self.body(x, y, starts)
        self.warmup_steps = max(0, self.warmup_steps - 1)
        return output

    def body(self, x: torch.Tensor, y: torch.Tensor, starts: torch.Tensor | None) -> StepOutput:
        """The step without zeroing the gradients: what a CUDA graph captures."""
        output = self.objective(self.nets, x, y, starts=starts)
        output.loss.backward()
        self.optimizer.step()
        if self.post_step_bn_forwards and output.x_adv is not None:
            # the authors' two logging forwards after the step: they only move BatchNorm statistics
            with torch.no_grad(), autocast(self.objective.autocast_dtype, x.device):
                self.nets.attack(x)
                self.nets.attack(output.x_adv)
        return output


@dataclass(frozen=True, slots=True)
class _Capture:
    graph: torch.cuda.CUDAGraph
    x: torch.Tensor  # static inputs: each replay reads them
    y: torch.Tensor
    starts: torch.Tensor | None
    output: StepOutput  # static outputs: each replay overwrites them


@dataclass
class CapturedStep:
    eager: EagerStep
    remaining_warmup: int = CAPTURE_WARMUP_STEPS
    capture: _Capture | None = None
    side_stream: torch.cuda.Stream | None = field(default=None, repr=False)

    @property
    def warmup_steps(self) -> int:
        return 0 if self.capture is not None else self.remaining_warmup + 1

    def __call__(self, x: torch.Tensor, y: torch.Tensor, starts: torch.Tensor | None) -> StepOutput:
        if self.capture is None and self.remaining_warmup > 0:
            self.remaining_warmup -= 1
            return self._warmup(x, y, starts)
        capture = self.capture or self._capture(x, y, starts)
        capture.x.copy_(x)
        capture.y.copy_(y)
        if capture.starts is not None and starts is not None:
            capture.starts.copy_(starts)
        capture.graph.replay()
        return capture.output

    def _warmup(self, x: torch.Tensor, y: torch.Tensor, starts: torch.Tensor | None) -> StepOutput:
        """An eager step on a side stream, as CUDA graph capture requires of the steps before it."""
        side = self.side_stream = self.side_stream or torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            output = self.eager(x, y, starts)
        torch.cuda.current_stream(x.device).wait_stream(side)
        return output

    def _capture(self, x: torch.Tensor, y: torch.Tensor, starts: torch.Tensor | None) -> _Capture:
        inputs = x.clone(), y.clone(), None if starts is None else starts.clone()
        # no gradients before capture: backward then allocates them in the graph's memory, and
        # every replay writes them afresh instead of accumulating
        self.eager.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            output = self.eager.body(*inputs)
        self.capture = _Capture(graph, *inputs, output)
        logger.info("train.step_captured batch=%s", tuple(x.shape))
        return self.capture
