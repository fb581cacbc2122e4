"""A terminal progress bar (tqdm on stderr) for local runs."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from ascl.training.callbacks import EpochSummary, StepProgress


class ProgressBarReporter:
    def __init__(self, *, epochs: int) -> None:
        self.bar = tqdm(total=epochs, unit="epoch", dynamic_ncols=True, file=None)

    def on_step(self, progress: StepProgress) -> None:
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
