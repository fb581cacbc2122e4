"""Terminal progress bars (tqdm on stderr) for local runs: epochs of training, examples of each
evaluation attack."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from ascl.training.callbacks import EpochSummary, StepProgress


class ProgressBarReporter:
    def __init__(self, *, epochs: int, completed: int = 0) -> None:
        self.bar = tqdm(total=epochs, initial=completed, unit="epoch", dynamic_ncols=True, file=None)

    def on_step(self, progress: StepProgress) -> None:
        self.bar.n = progress.epoch  # a resumed run starts where its checkpoint ended
        shown = {k: f"{v:.3f}" for k, v in progress.metrics.items() if k in ("loss", "clean_acc", "adv_acc")}
        self.bar.set_postfix(
            step=f"{progress.step}/{progress.total_steps}", img_s=f"{progress.images_per_s:.0f}", **shown
        )

    def on_epoch_end(self, summary: EpochSummary) -> None:
        self.bar.n = summary.epoch + 1
        val = {f"val_{k}": f"{v:.3f}" for k, v in summary.val.items()}
        self.bar.set_postfix(
            loss=f"{summary.train.get('loss', float('nan')):.3f}", img_s=f"{summary.images_per_s:.0f}", **val
        )

    def on_checkpoint(self, path: Path, *, epoch: int, is_best: bool) -> None:
        pass

    def close(self) -> None:
        self.bar.close()


class AttackProgressBar:
    """One bar per evaluation attack, counting the examples it has attacked."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def start(self, attack: str, total: int) -> None:
        self.close()
        self.bar = tqdm(total=total, desc=attack, unit="img", dynamic_ncols=True, file=None)

    def advance(self, examples: int) -> None:
        if self.bar is not None:
            self.bar.update(examples)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
