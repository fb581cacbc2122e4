"""The experiment config: one frozen, JSON-serialisable description of a training or evaluation run.

Stdlib only (no torch), so that the API server validates specs without the training stack.
Every invariant is checked in `__post_init__` and reported as a `ConfigError` that names the
dotted field path (`attack.eps`) and the bad value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal, cast

from ascl.config_fields import check_fields, fail, from_dict, knob, parse_override, to_jsonable, with_paths
from ascl.dataset_sizes import carves_validation, training_images

__all__ = ["ExperimentConfig", "parse_override"]

SPEC_VERSION = 1

DATASETS = ("cifar10", "cifar100", "svhn", "mnist", "digits", "synthetic")
MODELS = ("resnet18", "preact_resnet18", "wrn34_10", "wrn28_10", "cnn28", "cnn8")
OBJECTIVES = ("standard", "pgd_at", "trades", "ascl", "scl_at")
NEG_TYPES = ("all", "hard", "soft", "merge", "leaked")
DISTANCES = ("l1", "l2", "linf", "cosine", "matmul")


def check_same_model(trained: ExperimentConfig, evaluated: ExperimentConfig) -> None:
    """Evaluating a trained model may change anything but the model: its weights fit only the
    architecture it was trained with."""
    for name in (f.name for f in fields(ModelConfig)):
        before, after = getattr(trained.model, name), getattr(evaluated.model, name)
        if before != after:
            fail(f"model.{name}", after, f"the trained model has {before!r}; evaluation cannot change it")


def distance_normalization_problem(distance: str, normalize: bool) -> str | None:
    """The authors' rule for the contrastive latents: matmul, l1 and l2 need L2-normalised latents;
    cosine normalises by itself and refuses it (linf allows both). None when the pair is allowed."""
    if distance in ("matmul", "l1", "l2") and not normalize:
        return f"distance {distance!r} requires normalize=true"
    if distance == "cosine" and normalize:
        return "distance 'cosine' normalises itself; set normalize=false"
    return None


Norm = Literal["linf", "l2"]
Init = Literal["uniform", "normal", "zero"]
BnMode = Literal["train", "eval"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DataConfig:
    """Which data, where it lives, and the training-time augmentation."""

    dataset: str = knob("cifar10", "the dataset", choices=DATASETS, kind="dataset")
    data_dir: str = knob("data", "directory of the torchvision dataset files")
    download: bool = knob(False, "download the dataset if it is missing")
    val_size: int = knob(
        1000, "images carved from the training set for checkpoint selection (digits has a fixed split)", ge=0
    )
    train_subset: int | None = knob(None, "keep only the first N training images (quick runs)", ge=1)
    test_subset: int | None = knob(None, "keep only the first N test images", ge=1)
    crop_padding: int = knob(4, "random crop with this zero padding, as RandomCrop(32, padding=4)", ge=0, le=64)
    hflip: bool = knob(True, "random horizontal flips")
    synthetic_size: int = knob(4096, "training images of the synthetic dataset", ge=2, le=10_000_000)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    """Backbone and optional projection head. Inputs are [0, 1]; normalisation is inside the model."""

    arch: str = knob("resnet18", "the backbone", choices=MODELS, kind="model")
    feat_dim: int = knob(128, "projection head output; <= 0 means no head (z = penultimate features)", le=65_536)
    head: Literal["linear", "mlp"] = knob(
        "linear", "the projection head: one linear layer (the authors) or an MLP", kind="projection head"
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class AttackConfig:
    """The training attack (docs/method.md). Defaults are the authors' CIFAR-10 PGD-10."""

    norm: Norm = knob("linf", "threat model: linf or l2", kind="norm")
    eps: float = knob(0.031, "radius of the perturbation ball, in [0, 1] pixel units", ge=0, le=1)
    step_size: float = knob(0.007, "step of each PGD iteration", ge=0, le=1)
    steps: int = knob(10, "PGD iterations", ge=0, le=10_000)
    init: Init = knob("uniform", "random start: uniform in the ball, normal (TRADES) or zero", kind="attack init")
    init_std: float = knob(0.001, "standard deviation of the normal start", ge=0, le=1)
    restarts: int = knob(1, "random restarts; the worst is kept per example", ge=1, le=100)
    objective: Literal["ce", "kl"] = knob(
        "ce", "the attack's loss: cross-entropy or KL to the natural output", kind="attack objective"
    )
    bn_mode: BnMode = knob(
        "train", "BatchNorm mode during the attack (the authors attack in train mode)", kind="batch-norm mode"
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectiveConfig:
    """The training objective and its weights (docs/method.md), named by meaning, not by the
    authors' ADR flags: natural_weight = alpha, robust_weight = beta (trades_beta),
    smoothness_weight = lcsmtw, contrastive_weight = gbcomw."""

    kind: str = knob("ascl", "the training objective", choices=OBJECTIVES, kind="objective")
    natural_weight: float = knob(0.0, "weight of CE on natural images (alpha)", ge=0, le=1e6)
    robust_weight: float = knob(1.0, "weight of CE on adversarial images, or of TRADES' KL (beta)", ge=0, le=1e6)
    smoothness_weight: float = knob(0.0, "weight of KL(natural || adversarial) in ascl/scl_at", ge=0, le=1e6)
    contrastive_weight: float = knob(1.0, "weight of the contrastive term", ge=0, le=1e6)
    kl_reduction: Literal["mean", "batchmean"] = knob(
        "mean", "'mean' divides the KL by N·C, as the recipe", kind="KL reduction"
    )
    neg_type: str = knob("leaked", "which pairs the contrastive loss keeps", choices=NEG_TYPES, kind="negative type")
    distance: str = knob("linf", "distance between latents", choices=DISTANCES, kind="distance")
    temperature: float = knob(0.2, "softmax temperature of the contrastive loss", gt=0, le=1e6)
    normalize: bool = knob(True, "L2-normalise latents first (required by l1, l2 and matmul; not by cosine)")
    views: int = knob(1, "2 = the paper recipe's two augmented views per image", ge=1, le=2)
    combine: int = knob(1, "two-view combine type: which views the losses pair (docs/method.md)", ge=1, le=3)
    contrastive_scope: Literal["global", "worker"] = knob(
        "global", "data-parallel: the contrastive loss over all workers' latents, or each worker's own", kind="scope"
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.kind == "ascl" and (problem := distance_normalization_problem(self.distance, self.normalize)):
            fail("normalize", self.normalize, problem)


@dataclass(frozen=True, slots=True, kw_only=True)
class OptimConfig:
    """SGD and its learning-rate schedule."""

    lr: float = knob(0.1, "peak learning rate", gt=0)
    momentum: float = knob(0.9, "SGD momentum", ge=0, le=1)
    weight_decay: float = knob(5e-4, "L2 weight decay on every parameter", ge=0, le=1)
    nesterov: bool = knob(False, "Nesterov momentum (needs momentum > 0)")
    schedule: Literal["piecewise", "cosine", "onecycle", "constant"] = knob(
        "piecewise", "learning-rate schedule", kind="schedule"
    )
    milestones: tuple[int, ...] = knob(
        (100, 105, 110), "piecewise: epochs where lr is multiplied by gamma", ge=0, le=100_000
    )
    gamma: float = knob(0.1, "piecewise: the factor at each milestone", gt=0, le=1)

    def __post_init__(self) -> None:
        check_fields(self)
        if len(self.milestones) > 64:
            fail("milestones", len(self.milestones), "at most 64 milestones")
        if list(self.milestones) != sorted(self.milestones):
            fail("milestones", self.milestones, "must be ascending epochs >= 0")
        if self.nesterov and self.momentum == 0:
            fail("nesterov", self.nesterov, "needs momentum > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    """Loop settings: length, batch, precision and the speed options."""

    epochs: int = knob(120, "training epochs", ge=1, le=100_000)
    batch_size: int = knob(128, "images per step before views are stacked (the global batch)", ge=1, le=65_536)
    precision: Literal["auto", "fp32", "bf16"] = knob(
        "auto", "auto: bf16 autocast on CUDA, fp32 on CPU", kind="precision"
    )
    channels_last: bool = knob(True, "channels_last memory format (CUDA only)")
    cudnn_benchmark: bool = knob(
        True, "CUDA: time cuDNN's convolution algorithms at the first step and keep the fastest"
    )
    compile: Literal["none", "default", "reduce-overhead", "max-autotune"] = knob(
        "none", "torch.compile mode", kind="compile mode"
    )
    drop_last: bool = knob(True, "drop the last partial batch (static shapes)")
    post_step_bn_forwards: bool = knob(
        False, "the authors' two logging forwards after a step (they move BatchNorm statistics)"
    )
    log_every: int = knob(20, "steps between progress reports", ge=1, le=1_000_000)
    validate_every: int = knob(1, "epochs between validation passes", ge=1, le=100_000)
    cuda_graph: bool = knob(False, "CUDA only: capture the whole step (attack, loss, backward, SGD) as one graph")
    sync_batchnorm: bool = knob(False, "data-parallel only: BatchNorm statistics over the global batch")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.cuda_graph and self.compile in ("reduce-overhead", "max-autotune"):
            fail("cuda_graph", self.cuda_graph, f"compile {self.compile!r} has its own CUDA graphs; use none/default")
        if self.cuda_graph and not self.drop_last:
            fail("cuda_graph", self.cuda_graph, "a captured step needs static batch shapes: set drop_last=true")


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalConfig:
    """Validation during training and the final robustness evaluation (docs/method.md).

    Attack radii default to the training attack's eps; step sizes to its step size."""

    eps: float | None = knob(None, "evaluation radius (default: attack.eps)", ge=0, le=1)
    step_size: float | None = knob(None, "evaluation PGD step (default: attack.step_size)", ge=0, le=1)
    val_steps: int = knob(10, "per-epoch PGD steps on the validation split (eval mode)", ge=0, le=10_000)
    pgd_steps: int = knob(200, "PGD steps of the final evaluation", ge=0, le=100_000)
    pgd_restarts: int = knob(1, "PGD restarts of the final evaluation", ge=1, le=100)
    autoattack: Literal["none", "standard", "custom"] = knob(
        "none", "AutoAttack: none, standard, or custom = APGD-CE + APGD-T (the authors)", kind="AutoAttack version"
    )
    autoattack_examples: int = knob(1000, "test images AutoAttack runs on (the first N)", ge=1, le=1_000_000)
    eps_sweep: tuple[float, ...] = knob((), "radii of the robust-accuracy-versus-epsilon curve", ge=0, le=1)
    sweep_steps: int = knob(50, "PGD steps at each radius of the sweep", ge=0, le=10_000)
    batch_size: int = knob(500, "evaluation batch size", ge=1, le=65_536)
    checkpoint: Literal["best", "last"] = knob("best", "which checkpoint the final evaluation uses", kind="checkpoint")
    precision: Literal["fp32", "tf32", "bf16"] = knob(
        "tf32", "CUDA evaluation precision; CPU evaluates in fp32 unless bf16", kind="evaluation precision"
    )
    auto_batch: bool = knob(True, "CUDA: the largest batch that fits in half the free memory, at least batch_size")

    def __post_init__(self) -> None:
        check_fields(self)
        if len(self.eps_sweep) > 64:
            fail("eps_sweep", len(self.eps_sweep), "at most 64 radii")


@dataclass(frozen=True, slots=True, kw_only=True)
class ExperimentConfig:
    """Everything that defines a run. The service stores exactly `to_dict()` of this object."""

    spec_version: int = knob(SPEC_VERSION, "the config format version")
    name: str = knob("experiment", "the run's name")
    seed: int = knob(0, "seeds the weights and every epoch's randomness", ge=0, le=2**31 - 1)
    device: str = knob("auto", "auto (CUDA when present), cpu, cuda or cuda:N")
    cpu_threads: int = knob(0, "torch threads; 0: OMP_NUM_THREADS when set, else half the usable cores", ge=0, le=1024)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        check_fields(self)
        if len(self.name) > 200:
            fail("name", self.name[:40] + "...", "at most 200 characters")
        if self.spec_version != SPEC_VERSION:
            fail("spec_version", self.spec_version, f"this version reads spec_version {SPEC_VERSION}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            fail("device", self.device, "must be auto, cpu, cuda or cuda:N")
        if self.objective.kind != "ascl" and self.objective.views == 2:
            fail("objective.views", 2, "two views are only defined for the ascl objective")
        self._check_training_set()

    def _check_training_set(self) -> None:
        """A training set of at least one batch (one image without drop_last), and validation
        images where they are carved from it (checkpoints are selected on them)."""
        data = self.data
        if carves_validation(data.dataset) and data.val_size == 0:
            fail("data.val_size", 0, f"must be >= 1: {data.dataset}'s validation images come from its training set")
        images = training_images(
            data.dataset, val_size=data.val_size, train_subset=data.train_subset, synthetic_size=data.synthetic_size
        )
        if images < 1:
            fail("data.val_size", data.val_size, f"takes all of {data.dataset}'s training images: none is left")
        if self.train.drop_last and self.train.batch_size > images:
            fail(
                "train.batch_size",
                self.train.batch_size,
                f"more than the {images} training images (with drop_last, an epoch would have no step)",
            )

    @property
    def eval_eps(self) -> float:
        return self.attack.eps if self.eval.eps is None else self.eval.eps

    @property
    def eval_step_size(self) -> float:
        return self.attack.step_size if self.eval.step_size is None else self.eval.step_size

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        return from_dict(cls, data, "")

    @classmethod
    def from_spec(cls, data: dict[str, Any], overrides: dict[str, Any]) -> ExperimentConfig:
        """A whole or partial spec (defaults fill the rest) with dotted overrides, checked once as a
        whole: a spec may hold only with its overrides (a training set of one batch, two views with
        ascl), as a preset may only with its own."""
        if not isinstance(data, dict):
            fail("spec", data, "must be an object")
        default = cls()
        flat: dict[str, Any] = {}
        for key, value in data.items():
            if "." in key:
                fail(key, value, "a spec nests its fields in their sections, as {'train': {'epochs': 3}}")
            section = is_dataclass(getattr(default, key, None)) and isinstance(value, dict)
            flat |= {f"{key}.{inner}": item for inner, item in value.items()} if section else {key: value}
        return default.with_overrides({**flat, **overrides})

    def with_overrides(self, overrides: dict[str, Any]) -> ExperimentConfig:
        """A copy with dotted-path overrides applied, e.g. {"train.epochs": 3}."""
        return cast(ExperimentConfig, with_paths(self, overrides))
