"""Attack contracts: inside the eps-ball and [0, 1], no parameter gradients, modes restored."""

import pytest
import torch

from ascl.attacks import Pgd, fgsm
from ascl.config import AttackConfig, ModelConfig
from ascl.models import build_model


def pgd(**fields):
    return Pgd(AttackConfig(**fields))


ATTACKS = {
    "pgd-linf": pgd(norm="linf", eps=0.1, step_size=0.03, steps=5),
    "pgd-l2": pgd(norm="l2", eps=0.5, step_size=0.2, steps=5),
    "pgd-restarts-eval": pgd(norm="linf", eps=0.1, step_size=0.03, steps=3, restarts=3, bn_mode="eval"),
    "pgd-kl-trades-start": pgd(norm="linf", eps=0.1, step_size=0.03, steps=3, init="normal", objective="kl"),
    "fgsm": fgsm(eps=0.1),
    "fgsm-random-start": fgsm(eps=0.1, random_init=True),
}


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model(ModelConfig(arch="cnn8", feat_dim=16), num_classes=10, in_channels=1, mean=(0.5,), std=(0.5,))


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 8, 8, generator=generator)
    x[0] = 0.0  # images at the edges of [0, 1] exercise the clipping
    x[1] = 1.0
    return x, torch.randint(0, 10, (16,), generator=generator)


def _norm(delta, norm):
    flat = delta.flatten(1)
    return flat.abs().max(1).values if norm == "linf" else flat.norm(dim=1)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_result_inside_ball_and_image_range(name, model, batch):
    attack = ATTACKS[name]
    x, y = batch
    x_adv = attack(model, x, y, generator=torch.Generator().manual_seed(1))
    assert x_adv.shape == x.shape
    assert not x_adv.requires_grad
    assert x_adv.min() >= 0.0
    assert x_adv.max() <= 1.0
    assert (_norm(x_adv - x, attack.config.norm) <= attack.config.eps + 1e-6).all()


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_no_parameter_gradients(name, model, batch):
    ATTACKS[name](model, *batch)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("start_training", [True, False])
@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_model_mode_restored_and_batchnorm_mode_applied(model, batch, start_training, bn_mode):
    model.train(start_training)
    model.backbone.linear.eval()  # a mixed state must come back exactly
    before = [m.training for m in model.modules()]
    bn = model.backbone.features[1]
    stats = bn.running_mean.clone()
    pgd(norm="linf", eps=0.1, step_size=0.03, steps=2, bn_mode=bn_mode)(model, *batch)
    assert [m.training for m in model.modules()] == before
    moved = not torch.equal(stats, bn.running_mean)
    assert moved == (bn_mode == "train")  # train mode updates running statistics, eval mode does not


def test_attack_increases_loss_and_is_deterministic_under_a_generator(model, batch):
    x, y = batch
    attack = pgd(norm="linf", eps=0.2, step_size=0.05, steps=10, bn_mode="eval")
    model.eval()
    first = attack(model, x, y, generator=torch.Generator().manual_seed(7))
    second = attack(model, x, y, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, second)
    with torch.no_grad():
        clean_loss = torch.nn.functional.cross_entropy(model(x)[0], y)
        adv_loss = torch.nn.functional.cross_entropy(model(first)[0], y)
    assert adv_loss > clean_loss


def test_zero_eps_returns_the_input(model, batch):
    x, y = batch
    assert torch.equal(pgd(norm="linf", eps=0.0, step_size=0.1, steps=3)(model, x, y), x)


def test_run_from_drawn_starts_equals_the_call_with_the_same_generator(model, batch):
    """The split a captured training step relies on: the starts hold all the randomness."""
    x, y = batch
    attack = pgd(norm="linf", eps=0.1, step_size=0.03, steps=3, restarts=2, bn_mode="eval")
    starts = attack.random_starts(x, torch.Generator().manual_seed(5))
    assert starts.shape == (2, *x.shape)
    assert torch.equal(attack.run(model, x, y, starts), attack(model, x, y, generator=torch.Generator().manual_seed(5)))
