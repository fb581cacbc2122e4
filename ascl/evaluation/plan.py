"""What an evaluation runs: the threat model, the attacks, the examples per batch and the precision."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ascl.config import ExperimentConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalPlan:
    norm: str
    eps: float
    step_size: float
    pgd_steps: int
    pgd_restarts: int = 1
    autoattack: str = "none"  # none | standard | custom
    autoattack_examples: int = 1000
    eps_sweep: tuple[float, ...] = ()
    sweep_steps: int = 50
    batch_size: int = 500
    auto_batch: bool = False
    precision: str = "fp32"  # fp32 | tf32 | bf16
    seed: int = 0

    @classmethod
    def from_config(cls, config: ExperimentConfig) -> EvalPlan:
        ev = config.eval
        return cls(
            norm=config.attack.norm,
            eps=config.eval_eps,
            step_size=config.eval_step_size,
            pgd_steps=ev.pgd_steps,
            pgd_restarts=ev.pgd_restarts,
            autoattack=ev.autoattack,
            autoattack_examples=ev.autoattack_examples,
            eps_sweep=ev.eps_sweep,
            sweep_steps=ev.sweep_steps,
            batch_size=ev.batch_size,
            auto_batch=ev.auto_batch,
            precision=ev.precision,
            seed=config.seed,
        )

    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.precision == "bf16" else None

    def precision_on(self, device: torch.device) -> str:
        """The precision that runs: TF32 exists on CUDA only, elsewhere 'tf32' is fp32."""
        return "fp32" if self.precision == "tf32" and device.type != "cuda" else self.precision
