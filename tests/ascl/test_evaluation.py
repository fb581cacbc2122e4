"""The robustness report: which examples each figure covers, which attacks ran, progress, precision."""

import logging
from dataclasses import replace

import pytest
import torch

from ascl.evaluation import EvalPlan, evaluate_robustness, predictions_correct
from ascl.experiment import load_classifier, run_experiment
from ascl.presets import get_preset
from ascl.runtime import tf32


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A digits classifier a few epochs into standard training: most test images are correct."""
    run_dir = tmp_path_factory.mktemp("digits")
    config = get_preset("digits-standard").with_overrides(
        {"train.epochs": 3, "eval.pgd_steps": 1, "eval.val_steps": 1, "eval.eps_sweep": []}
    )
    run_experiment(config, run_dir=run_dir)
    model, _, data = load_classifier(run_dir / "last.pt", device="cpu")
    return model, data.test


def plan(**fields):
    base = EvalPlan(norm="linf", eps=1e-4, step_size=1e-4, pgd_steps=3, batch_size=64, seed=0)
    return replace(base, **fields)


def test_robust_accuracy_covers_exactly_the_autoattack_examples(trained):
    """PGD runs on all 300 test images, AutoAttack on the first 40: the robust accuracy, its clean
    accuracy and its flags are all about those 40, and the PGD figure stays about all 300."""
    model, split = trained
    report = evaluate_robustness(model, split, plan(autoattack="custom", autoattack_examples=40))
    assert (report.examples, report.pgd_examples, report.robust_examples, report.autoattack_examples) == (
        300,
        300,
        40,
        40,
    )
    assert len(report.robust_flags) == 40
    assert report.robust_acc == pytest.approx(sum(report.robust_flags) / 40)
    clean_first_40 = predictions_correct(model, split.head(40), batch_size=64).float().mean().item()
    assert report.robust_clean_acc == pytest.approx(clean_first_40)
    assert report.robust_acc <= report.robust_clean_acc
    assert report.robust_attacks == ["pgd-3", "apgd-ce", "apgd-t"]
    assert report.clean_acc == pytest.approx(predictions_correct(model, split, batch_size=64).float().mean().item())


def test_without_autoattack_the_robust_set_is_the_whole_split(trained):
    model, split = trained
    report = evaluate_robustness(model, split, plan())
    assert (report.robust_examples, len(report.robust_flags), report.autoattack_attacks) == (300, 300, [])
    assert report.robust_attacks == ["pgd-3"]
    assert report.robust_clean_acc == report.clean_acc


def test_custom_autoattack_runs_apgd_ce_then_apgd_t_and_logs_that(trained, caplog):
    model, split = trained
    with caplog.at_level(logging.INFO):
        report = evaluate_robustness(model, split, plan(pgd_steps=0, autoattack="custom", autoattack_examples=30))
    assert report.autoattack_attacks == ["apgd-ce", "apgd-t"]
    assert report.robust_attacks == ["apgd-ce", "apgd-t"]
    assert "attacks=apgd-ce,apgd-t" in caplog.text
    assert "standard version" not in caplog.text


@pytest.mark.slow
def test_standard_autoattack_runs_the_four_attacks(trained):
    model, split = trained
    report = evaluate_robustness(model, split, plan(pgd_steps=0, autoattack="standard", autoattack_examples=8))
    assert report.autoattack_attacks == ["apgd-ce", "apgd-t", "fab-t", "square"]


def test_an_attack_with_nothing_left_to_attack_is_not_listed(trained):
    model, split = trained
    report = evaluate_robustness(
        model, split, plan(eps=1.0, step_size=0.5, autoattack="custom", autoattack_examples=30)
    )
    assert report.robust_acc == 0.0
    assert report.autoattack_attacks == ["apgd-ce"]  # APGD-CE at eps 1 leaves nothing for APGD-T


class Recorder:
    def __init__(self):
        self.started, self.done = [], {}

    def start(self, attack, total):
        self.started.append((attack, total))
        self.done[attack] = 0

    def advance(self, examples):
        self.done[self.started[-1][0]] += examples


def test_progress_follows_every_attack_to_its_end(trained):
    model, split = trained
    recorder = Recorder()
    evaluate_robustness(
        model,
        split,
        plan(autoattack="custom", autoattack_examples=30, eps_sweep=(0.1,), sweep_steps=2),
        progress=recorder,
    )
    names = [name for name, _ in recorder.started]
    assert names == ["pgd-3", "apgd-ce", "apgd-t", "pgd-2 eps=0.1"]
    assert all(recorder.done[name] == total for name, total in recorder.started)
    assert recorder.started[0][1] == 300


def test_bf16_evaluation_matches_fp32_on_almost_every_example(trained):
    model, split = trained
    fp32 = evaluate_robustness(model, split, plan(eps=0.1, step_size=0.025, pgd_steps=10))
    bf16 = evaluate_robustness(model, split, plan(eps=0.1, step_size=0.025, pgd_steps=10, precision="bf16"))
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    flips = sum(a != b for a, b in zip(fp32.robust_flags, bf16.robust_flags, strict=True))
    assert flips <= 15  # 5% of 300: rounding moves a few borderline examples, no more


def test_the_report_names_the_precision_that_ran(trained):
    model, split = trained
    report = evaluate_robustness(model, split.head(32), plan(pgd_steps=1, precision="tf32"))
    assert report.precision == "fp32"  # on a CPU: TF32 is a CUDA format


def test_tf32_setting_is_restored():
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    with tf32(not before[0]):
        assert torch.backends.cudnn.allow_tf32 is (not before[0])
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before
