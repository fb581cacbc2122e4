"""What `ascl jobs submit` and `ascl sweeps create` send: the request body built from their options."""

from __future__ import annotations

import pytest

from ascl.cli import build_parser, main
from service.cli.jobs import submission_body
from service.cli.sweeps import sweep_body


def body(*argv: str) -> dict:
    return submission_body(build_parser().parse_args(["jobs", "submit", *argv]))


def test_priority_is_sent_only_when_given_so_the_queues_default_applies():
    assert "priority" not in body("--preset", "digits-ascl", "--queue", "gpu")
    assert body("--preset", "digits-ascl", "--priority", "5")["priority"] == 5


def test_hold_force_queue_dependencies_and_overrides_reach_the_body():
    sent = body(
        "--preset", "digits-ascl", "--hold", "--force-queue", "--depends-on", "abc", "--depends-on", "def:any",
        "--set", "train.epochs=3", "--gpus", "1", "--workers", "2",
    )  # fmt: skip
    assert sent["hold"] is True
    assert sent["force_queue"] is True
    assert sent["depends_on"] == [{"job": "abc", "on": "success"}, {"job": "def", "on": "any"}]
    assert sent["overrides"] == {"train.epochs": 3}
    assert sent["resources"] == {"gpus": 1.0, "cpus": 1.0, "workers": 2}


def test_hold_and_release_are_commands():
    parser = build_parser()
    for verb in ("hold", "release"):
        args = parser.parse_args(["jobs", verb, "JOB"])
        assert args.job_id == "JOB"


def test_the_standard_evaluation_is_opted_out_only_when_asked():
    assert "auto_evaluate" not in body("--preset", "digits-ascl")
    assert body("--preset", "digits-ascl", "--no-auto-eval")["auto_evaluate"] is False


def sweep(*argv: str) -> dict:
    return sweep_body(build_parser().parse_args(["sweeps", "create", "--preset", "digits-ascl", *argv]))


def test_a_sweep_prunes_on_its_objective_unless_told_another_per_epoch_figure():
    assert sweep("--early-stopping", "median")["early_stopping"]["metric"] == "val.robust_acc"
    # the final report's figures exist only at the end: pruning takes their per-epoch counterpart
    final = sweep("--objective", "test.clean_acc", "--early-stopping", "median")["early_stopping"]["metric"]
    assert final == "val.clean_acc"
    for final, per_epoch in [("test.pgd_acc", "val.robust_acc"), ("test.robust_clean_acc", "val.clean_acc")]:
        assert sweep("--objective", final, "--early-stopping", "median")["early_stopping"]["metric"] == per_epoch
    told = sweep(
        "--objective", "test.robust_acc", "--early-stopping", "median", "--early-stopping-metric", "val.robust_acc"
    )
    assert (told["objective"], told["early_stopping"]["metric"]) == (
        [{"metric": "test.robust_acc", "mode": "max"}],
        "val.robust_acc",
    )


@pytest.mark.parametrize(("option", "value"), [("--early-stopping-metric", "val.clean_acc"), ("--grace-epochs", "3")])
def test_a_pruning_option_without_a_pruning_rule_is_an_error(capsys, option, value):
    assert main(["sweeps", "create", "--preset", "p", option, value]) == 2
    assert f"{option} needs --early-stopping" in capsys.readouterr().err


def test_what_the_sweep_options_cannot_mean_is_an_error_not_silently_dropped(tmp_path):
    body = tmp_path / "sweep.json"
    body.write_text('{"name": "from-file"}')
    parse = build_parser().parse_args
    with pytest.raises(ValueError, match="--early-stopping says goes into the file"):
        sweep_body(parse(["sweeps", "create", "--file", str(body), "--early-stopping", "median"]))
    with pytest.raises(ValueError, match="--max-trials says goes into the file"):
        sweep_body(parse(["sweeps", "create", "--file", str(body), "--max-trials", "40"]))
    assert sweep_body(parse(["sweeps", "create", "--file", str(body)])) == {"name": "from-file"}
    with pytest.raises(ValueError, match="METRIC:min or METRIC:max"):
        sweep("--objective", "train.loss:MIN")
    assert sweep("--objective", "train.loss:min")["objective"] == [{"metric": "train.loss", "mode": "min"}]
    with pytest.raises(ValueError, match="flags are 'log' and 'int'"):
        sweep("--space", "optim.lr=0.001:0.1:lg")


def test_a_sweep_sends_what_was_given_and_leaves_the_rest_to_the_services_defaults():
    sent = sweep("--space", "optim.lr=0.01,0.02", "--seed", "0", "--cpus", "2")
    assert sent == {
        "base": {"preset": "digits-ascl", "overrides": {}, "resources": {"cpus": 2.0}},
        "space": {"optim.lr": {"values": [0.01, 0.02]}},
        "objective": [{"metric": "val.robust_acc", "mode": "max"}],
        "seed": 0,
    }
