"""Progress of local runs on stderr: epochs of training, examples of each evaluation attack; as tqdm
bars in a terminal, as plain lines in a log file."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
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


class _Lines:
    """Plain lines on stderr, with the time of the last one for throttling."""

    def __init__(self, every_s: float, clock: Callable[[], float]) -> None:
        self.every_s = every_s
        self.clock = clock
        self.last = clock()

    def due(self) -> bool:
        return self.clock() - self.last >= self.every_s

    def say(self, line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
        self.last = self.clock()

    def close(self) -> None:
        pass


class ProgressLines(_Lines):
    """Progress for a log file (stderr not a terminal): a line per finished epoch, and a line during
    an epoch at most every `every_s` seconds, where a bar's carriage-return frames would pile up."""

    def __init__(self, *, epochs: int, every_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(every_s, clock)
        self.epochs = epochs

    def on_step(self, progress: StepProgress) -> None:
        if not self.due():
            return
        shown = " ".join(f"{k}={v:.3f}" for k, v in progress.metrics.items() if k in ("loss", "clean_acc", "adv_acc"))
        self.say(
            f"epoch {progress.epoch + 1}/{self.epochs} step {progress.step}/{progress.total_steps} "
            f"img/s={progress.images_per_s:.0f} {shown}"
        )

    def on_epoch_end(self, summary: EpochSummary) -> None:
        val = "".join(f" val_{k}={v:.3f}" for k, v in summary.val.items())
        self.say(
            f"epoch {summary.epoch + 1}/{summary.epochs} done in {summary.seconds:.1f}s "
            f"loss={summary.train.get('loss', float('nan')):.3f} img/s={summary.images_per_s:.0f}{val}"
        )

    def on_checkpoint(self, path: Path, *, epoch: int, is_best: bool) -> None:
        pass


class AttackProgressLines(_Lines):
    """The attack counterpart of `ProgressLines`: a line as each attack starts and ends, and at most
    every `every_s` seconds in between."""

    def __init__(self, *, every_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(every_s, clock)
        self.attack = ""
        self.total = 0
        self.done = 0

    def start(self, attack: str, total: int) -> None:
        self.attack, self.total, self.done = attack, total, 0
        self.say(f"{attack}: {total} examples")

    def advance(self, examples: int) -> None:
        self.done += examples
        if self.done >= self.total:
            self.say(f"{self.attack}: done")
        elif self.due():
            self.say(f"{self.attack}: {self.done}/{self.total} examples")
