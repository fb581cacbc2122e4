"""The `ascl` command line: what depends on being a process (output, exit status, a terminal, a closed
pipe) run as a real subprocess, the refusals in this process (each subprocess imports torch again)."""

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

from ascl.cli import resolve_config

QUICK = [
    "--set",
    "train.epochs=1",
    "--set",
    "data.train_subset=128",
    "--set",
    "eval.pgd_steps=2",
    "--set",
    "eval.val_steps=1",
    "--set",
    "eval.eps_sweep=[0.0, 0.1]",
]


def ascl(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "ascl.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300, check=False
    )


@pytest.fixture
def ascl_here(capsys, monkeypatch):
    """`ascl ARGS` through its entry point in this process: (exit status, stdout, stderr). An exception
    the command does not turn into a message escapes, failing the test as a traceback would."""
    from ascl import cli

    def run(*args, cwd=None):
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()
        try:
            status = cli.main([str(arg) for arg in args])
        except SystemExit as exit_:  # argparse's own refusals
            status = exit_.code
        out, err = capsys.readouterr()
        return status, out, err

    return run


def test_train_then_eval_prints_json(tmp_path, ascl_here):
    run = ascl("train", "--preset", "digits-ascl", *QUICK, "--run-dir", str(tmp_path / "run"), "--no-progress")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["epochs_completed"] == 1
    assert result["test"]["examples"] == 300
    assert (tmp_path / "run" / "eps_sweep.png").read_bytes()[:4] == b"\x89PNG"

    evaluated = ascl(
        "eval",
        "--checkpoint",
        str(tmp_path / "run" / "best.pt"),
        "--device",
        "cpu",
        "--set",
        "eval.pgd_steps=2",
        "--out",
        str(tmp_path / "eval"),
    )
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["clean_acc"] == pytest.approx(result["test"]["clean_acc"])
    assert "robust_flags" not in report
    assert len(json.loads((tmp_path / "eval" / "report.json").read_text())["robust_flags"]) == 300
    assert "pgd-2" in evaluated.stderr  # a progress bar per attack

    best = tmp_path / "run" / "best.pt"
    for change, message in (
        ("model.arch=resnet18", "model.arch: the trained model has 'cnn8'"),
        ('data.dataset="synthetic"', "does not fit synthetic's 10 classes and 3 channels"),
    ):
        status, _, stderr = ascl_here("eval", "--checkpoint", best, "--device", "cpu", "--set", change, "--no-progress")
        assert status == 2, stderr
        assert message in stderr


def test_checkpoints_that_are_not_one_are_named_clearly(tmp_path, ascl_here):
    (tmp_path / "notes.json").write_text("{}")
    for path, message in (
        (tmp_path, f"{tmp_path} is a directory: pass {tmp_path / 'last.pt'} or {tmp_path / 'best.pt'}"),
        (tmp_path / "notes.json", "is not an ascl checkpoint, or is damaged"),
    ):
        status, _, stderr = ascl_here("eval", "--checkpoint", path)
        assert status == 2, stderr
        assert message in stderr
        assert "weights_only" not in stderr  # torch's advice to load the file unsafely is not passed on


def test_paths_that_cannot_be_written_are_one_line_before_any_work(tmp_path, ascl_here):
    (tmp_path / "afile").write_text("")
    for args in (
        ["train", "--preset", "digits-ascl", "--run-dir", "afile/run"],
        ["train", "--preset", "digits-ascl", "--resume-from", "missing.pt"],
        ["eval", "--checkpoint", "missing.pt", "--out", "afile"],
    ):
        status, _, stderr = ascl_here(*args, "--no-progress", cwd=tmp_path)
        assert status == 2, (args, stderr)
        assert stderr.startswith("error: "), stderr
        assert stderr.count("\n") == 1, stderr  # one line
    assert not (tmp_path / "runs").exists()  # a missing checkpoint to resume from trained nothing


@pytest.mark.slow
def test_rerunning_a_finished_run_says_it_is_complete_and_prints_its_result(tmp_path, ascl_here):
    args = ["train", "--preset", "digits-pgdat", *QUICK, "--set", "eval.eps_sweep=[]", "--run-dir", str(tmp_path)]
    status, first, stderr = ascl_here(*args, "--no-progress")
    assert status == 0, stderr
    status, again, stderr = ascl_here(*args)
    assert status == 0, stderr
    assert f"{tmp_path}: 1 epochs trained already (train.epochs=1): nothing to train" in stderr
    assert json.loads(again) == json.loads(first)


def test_every_option_of_every_command_has_help(monkeypatch):
    import argparse

    from ascl import cli

    monkeypatch.setattr(cli, "entry_points", lambda group: [])  # the library's own commands only
    parser = cli.build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(commands.choices) == {"train", "eval", "presets"}
    for name, command in commands.choices.items():
        for action in command._actions:
            assert action.help, f"ascl {name} {'/'.join(action.option_strings) or action.dest} has no help"


def _tiny_config(tmp_path, ascl_here):
    config = json.loads(ascl_here("presets", "digits-pgdat")[1])
    config["train"]["epochs"] = 1
    config["data"]["train_subset"] = 64
    config["eval"].update(pgd_steps=1, val_steps=1, eps_sweep=[])
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_progress_in_a_log_file_is_plain_lines(tmp_path, ascl_here):
    status, _, stderr = ascl_here("train", "--config", _tiny_config(tmp_path, ascl_here), "--run-dir", tmp_path / "run")
    assert status == 0, stderr
    assert "\r" not in stderr  # no bar frames piling up in a log
    lines = stderr.splitlines()
    assert any(line.startswith("epoch 1/1 done in ") and "img/s=" in line for line in lines), stderr
    assert any(line.endswith(": done") for line in lines), stderr  # the attacks of the final evaluation


def test_progress_in_a_terminal_is_a_bar(tmp_path, ascl_here):
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a new pty has no size
    args = ["train", "--config", str(_tiny_config(tmp_path, ascl_here)), "--run-dir", str(tmp_path / "run")]
    with subprocess.Popen([sys.executable, "-m", "ascl.cli", *args], stdout=subprocess.PIPE, stderr=follower) as child:
        os.close(follower)
        child.communicate(timeout=300)
        shown = _read_all(leader)
    assert child.returncode == 0, shown
    assert "\r" in shown  # tqdm redraws its line
    assert "epoch" in shown


def _read_all(fd):
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the terminal closed with the child
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--preset", "digits-acsl"], "did you mean 'digits-ascl'"),
        (["train", "--preset", "digits-ascl", "--set", "model.arch=resnet81"], "model.arch"),
        (
            ["train", "--preset", "digits-ascl", "--set", "data.dataset=mnist", "--set", "data.data_dir=/nonexistent"],
            "/nonexistent",
        ),
        (["train", "--preset", "digits-ascl", "--set", "attack.eps=-1"], "attack.eps"),
        (["eval", "--checkpoint", "/nonexistent/best.pt"], "does not exist"),
        (["train", "--preset", "digits-ascl", "--set", "name=../elsewhere"], "cannot name a directory under runs/"),
        (["train", "--preset", "digits-ascl", "--set", "name=/tmp/x"], "cannot name a directory under runs/"),
    ],
)
def test_errors_are_one_clear_line_and_exit_2(args, message, tmp_path, ascl_here):
    status, _, stderr = ascl_here(*args, cwd=tmp_path)
    assert status == 2
    assert message in stderr


def test_presets_lists_the_paper_recipes(ascl_here):
    status, out, _ = ascl_here("presets")
    assert status == 0
    assert "paper-cifar10-resnet18-ascl" in out


def test_a_closed_pipe_ends_the_command_quietly():
    """`ascl presets NAME | head -1`: the reader leaves first; no BrokenPipeError traceback."""
    command = [sys.executable, "-m", "ascl.cli", "presets", "paper-cifar10-resnet18-ascl"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # long before the command has imported anything and printed
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141
    assert "BrokenPipeError" not in stderr
    assert "Traceback" not in stderr


def test_progress_lines_during_an_epoch_or_an_attack_come_at_most_every_interval(capsys):
    from ascl.training.callbacks import StepProgress
    from ascl.training.progress import AttackProgressLines, ProgressLines

    now = [0.0]
    epochs = ProgressLines(epochs=3, every_s=30.0, clock=lambda: now[0])
    attacks = AttackProgressLines(every_s=30.0, clock=lambda: now[0])
    attacks.start("pgd-20", 100)
    for second in (10.0, 31.0, 40.0, 62.0):
        now[0] = second
        epochs.on_step(
            StepProgress(epoch=1, epochs=3, step=7, total_steps=9, images_per_s=50.0, metrics={"loss": 1.5}, lr=0.1)
        )
        attacks.advance(20)
    attacks.advance(20)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "pgd-20: 100 examples",
        "epoch 2/3 step 7/9 img/s=50 loss=1.500",  # at 31 s
        "pgd-20: 40/100 examples",
        "epoch 2/3 step 7/9 img/s=50 loss=1.500",  # at 62 s
        "pgd-20: 80/100 examples",
        "pgd-20: done",
    ]


def test_a_config_file_is_checked_with_its_overrides_as_one_config(tmp_path):
    """A file whose training set holds only with the overrides beside it is not refused alone."""
    spec = tmp_path / "spec.json"
    spec.write_text('{"data": {"dataset": "synthetic", "synthetic_size": 512}}')
    config = resolve_config(None, spec, ["data.val_size=100"])
    assert (config.data.synthetic_size, config.data.val_size) == (512, 100)
