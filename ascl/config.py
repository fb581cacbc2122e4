"""The experiment config: one frozen, JSON-serialisable description of a training or evaluation run.

Stdlib only (no torch), so that the API server validates specs without the training stack.
Every invariant is checked in `__post_init__` and reported as a `ConfigError` that names the
dotted field path (`attack.eps`) and the bad value.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin, get_type_hints

from ascl.errors import ConfigError
from ascl.registry import unknown_name_message

SPEC_VERSION = 1

DATASETS = ("cifar10", "cifar100", "svhn", "mnist", "digits", "synthetic")
MODELS = ("resnet18", "preact_resnet18", "wrn34_10", "wrn28_10", "cnn28", "cnn8")
OBJECTIVES = ("standard", "pgd_at", "trades", "ascl", "scl_at")
NEG_TYPES = ("all", "hard", "soft", "merge", "leaked")
DISTANCES = ("l1", "l2", "linf", "cosine", "matmul")

Norm = Literal["linf", "l2"]
Init = Literal["uniform", "normal", "zero"]
BnMode = Literal["train", "eval"]


def distance_normalization_problem(distance: str, normalize: bool) -> str | None:
    """The authors' rule for the contrastive latents: matmul, l1 and l2 need L2-normalised latents;
    cosine normalises by itself and refuses it (linf allows both). None when the pair is allowed."""
    if distance in ("matmul", "l1", "l2") and not normalize:
        return f"distance {distance!r} requires normalize=true"
    if distance == "cosine" and normalize:
        return "distance 'cosine' normalises itself; set normalize=false"
    return None


def _fail(name: str, value: Any, problem: str) -> typing.NoReturn:
    raise ConfigError(name, f"{problem} (got {value!r})")


def _choice(name: str, value: str, options: tuple[str, ...], kind: str) -> None:
    if value not in options:
        raise ConfigError(name, unknown_name_message(kind, value, options))


def _positive(name: str, value: float) -> None:
    if not value > 0 or not math.isfinite(value):
        _fail(name, value, "must be a finite number > 0")


def _non_negative(name: str, value: float) -> None:
    if not value >= 0 or not math.isfinite(value):
        _fail(name, value, "must be a finite number >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class DataConfig:
    """Which data, where it lives, and the training-time augmentation."""

    dataset: str = "cifar10"
    data_dir: str = "data"
    download: bool = False
    val_size: int = 1000  # carved from the training set for checkpoint selection; digits uses a fixed split
    train_subset: int | None = None  # keep only the first N training images (quick runs)
    test_subset: int | None = None
    crop_padding: int = 4  # random crop with zero padding, as torchvision RandomCrop(32, padding=4)
    hflip: bool = True
    synthetic_size: int = 4096

    def __post_init__(self) -> None:
        _choice("dataset", self.dataset, DATASETS, "dataset")
        if self.val_size < 0:
            _fail("val_size", self.val_size, "must be >= 0")
        for name in ("train_subset", "test_subset"):
            value = getattr(self, name)
            if value is not None and value < 1:
                _fail(name, value, "must be >= 1 or null")
        if self.crop_padding < 0:
            _fail("crop_padding", self.crop_padding, "must be >= 0")
        if self.synthetic_size < 2:
            _fail("synthetic_size", self.synthetic_size, "must be >= 2")


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    """Backbone and optional projection head. Inputs are [0, 1]; normalisation is inside the model."""

    arch: str = "resnet18"
    feat_dim: int = 128  # projection head output; <= 0 means no head (z = penultimate features)
    head: Literal["linear", "mlp"] = "linear"  # the authors use one linear layer

    def __post_init__(self) -> None:
        _choice("arch", self.arch, MODELS, "model")
        _choice("head", self.head, ("linear", "mlp"), "projection head")


@dataclass(frozen=True, slots=True, kw_only=True)
class AttackConfig:
    """The training attack (ASCL_SPEC §2). Defaults are the authors' CIFAR-10 PGD-10."""

    norm: Norm = "linf"
    eps: float = 0.031
    step_size: float = 0.007
    steps: int = 10
    init: Init = "uniform"  # TRADES starts from x + 0.001·N(0, I)
    init_std: float = 0.001
    restarts: int = 1
    objective: Literal["ce", "kl"] = "ce"
    bn_mode: BnMode = "train"  # the authors attack with BatchNorm in train mode during training

    def __post_init__(self) -> None:
        _choice("norm", self.norm, ("linf", "l2"), "norm")
        _non_negative("eps", self.eps)
        _non_negative("step_size", self.step_size)
        _non_negative("init_std", self.init_std)
        if self.steps < 0:
            _fail("steps", self.steps, "must be >= 0")
        if self.restarts < 1:
            _fail("restarts", self.restarts, "must be >= 1")
        _choice("init", self.init, ("uniform", "normal", "zero"), "attack init")
        _choice("objective", self.objective, ("ce", "kl"), "attack objective")
        _choice("bn_mode", self.bn_mode, ("train", "eval"), "batch-norm mode")


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectiveConfig:
    """The training objective and its weights (ASCL_SPEC §3), named by meaning, not by the
    authors' ADR flags: natural_weight = alpha, robust_weight = beta (trades_beta),
    smoothness_weight = lcsmtw, contrastive_weight = gbcomw."""

    kind: str = "ascl"
    natural_weight: float = 0.0
    robust_weight: float = 1.0
    smoothness_weight: float = 0.0
    contrastive_weight: float = 1.0
    kl_reduction: Literal["mean", "batchmean"] = "mean"  # 'mean' divides by N·C, as the recipe
    neg_type: str = "leaked"
    distance: str = "linf"
    temperature: float = 0.2
    normalize: bool = True
    views: int = 1  # 2 = the paper recipe's two augmented views per image
    combine: int = 1  # two-view combine type (ASCL_SPEC §3.8)
    contrastive_scope: Literal["global", "worker"] = "global"  # data-parallel: all workers' latents or each's own

    def __post_init__(self) -> None:
        _choice("kind", self.kind, OBJECTIVES, "objective")
        for name in ("natural_weight", "robust_weight", "smoothness_weight", "contrastive_weight"):
            _non_negative(name, getattr(self, name))
        _choice("kl_reduction", self.kl_reduction, ("mean", "batchmean"), "KL reduction")
        _choice("neg_type", self.neg_type, NEG_TYPES, "negative type")
        _choice("distance", self.distance, DISTANCES, "distance")
        _positive("temperature", self.temperature)
        if self.views not in (1, 2):
            _fail("views", self.views, "must be 1 or 2")
        if self.combine not in (1, 2, 3):
            _fail("combine", self.combine, "must be 1, 2 or 3")
        _choice("contrastive_scope", self.contrastive_scope, ("global", "worker"), "contrastive scope")
        if self.kind == "ascl" and (problem := distance_normalization_problem(self.distance, self.normalize)):
            _fail("normalize", self.normalize, problem)


@dataclass(frozen=True, slots=True, kw_only=True)
class OptimConfig:
    """SGD and its learning-rate schedule (ASCL_SPEC §7.1)."""

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: Literal["piecewise", "cosine", "onecycle", "constant"] = "piecewise"
    milestones: tuple[int, ...] = (100, 105, 110)  # piecewise: epochs where lr is multiplied by gamma
    gamma: float = 0.1

    def __post_init__(self) -> None:
        _positive("lr", self.lr)
        _non_negative("momentum", self.momentum)
        _non_negative("weight_decay", self.weight_decay)
        _positive("gamma", self.gamma)
        _choice("schedule", self.schedule, ("piecewise", "cosine", "onecycle", "constant"), "schedule")
        if list(self.milestones) != sorted(self.milestones) or any(m < 0 for m in self.milestones):
            _fail("milestones", self.milestones, "must be ascending epochs >= 0")
        if self.nesterov and self.momentum == 0:
            _fail("nesterov", self.nesterov, "needs momentum > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    """Loop settings: length, batch, precision and the speed options."""

    epochs: int = 120
    batch_size: int = 128  # images per step before views are stacked
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    channels_last: bool = True  # CUDA only
    compile: Literal["none", "default", "reduce-overhead", "max-autotune"] = "none"
    drop_last: bool = True
    post_step_bn_forwards: bool = False  # the authors' two logging forwards after each step (§7.2)
    log_every: int = 20  # steps between progress reports
    validate_every: int = 1  # epochs between validation passes
    cuda_graph: bool = False  # CUDA only: capture the whole step (attack, loss, backward, SGD) as one CUDA graph
    sync_batchnorm: bool = False  # data-parallel only: BatchNorm statistics over the global batch

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "log_every", "validate_every"):
            if getattr(self, name) < 1:
                _fail(name, getattr(self, name), "must be >= 1")
        _choice("precision", self.precision, ("auto", "fp32", "bf16"), "precision")
        _choice("compile", self.compile, ("none", "default", "reduce-overhead", "max-autotune"), "compile mode")
        if self.cuda_graph and self.compile in ("reduce-overhead", "max-autotune"):
            _fail("cuda_graph", self.cuda_graph, f"compile {self.compile!r} has its own CUDA graphs; use none/default")
        if self.cuda_graph and not self.drop_last:
            _fail("cuda_graph", self.cuda_graph, "a captured step needs static batch shapes: set drop_last=true")


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalConfig:
    """Validation during training and the final robustness evaluation (ASCL_SPEC §8).

    Attack radii default to the training attack's eps; step sizes to its step size."""

    eps: float | None = None
    step_size: float | None = None
    val_steps: int = 10  # per-epoch PGD on the validation split, eval mode
    pgd_steps: int = 200
    pgd_restarts: int = 1
    autoattack: Literal["none", "standard", "custom"] = "none"  # custom = APGD-CE + APGD-T (authors)
    autoattack_examples: int = 1000
    eps_sweep: tuple[float, ...] = ()
    sweep_steps: int = 50
    batch_size: int = 500
    checkpoint: Literal["best", "last"] = "best"
    precision: Literal["fp32", "tf32", "bf16"] = "tf32"  # CUDA; CPU evaluates in fp32 unless bf16
    auto_batch: bool = True  # CUDA: the largest batch that fits in half the free memory, at least batch_size

    def __post_init__(self) -> None:
        if self.eps is not None:
            _non_negative("eps", self.eps)
        if self.step_size is not None:
            _non_negative("step_size", self.step_size)
        for name in ("val_steps", "pgd_steps", "sweep_steps"):
            if getattr(self, name) < 0:
                _fail(name, getattr(self, name), "must be >= 0")
        for name in ("pgd_restarts", "autoattack_examples", "batch_size"):
            if getattr(self, name) < 1:
                _fail(name, getattr(self, name), "must be >= 1")
        _choice("autoattack", self.autoattack, ("none", "standard", "custom"), "AutoAttack version")
        for eps in self.eps_sweep:
            _non_negative("eps_sweep", eps)
        _choice("checkpoint", self.checkpoint, ("best", "last"), "checkpoint")
        _choice("precision", self.precision, ("fp32", "tf32", "bf16"), "evaluation precision")


@dataclass(frozen=True, slots=True, kw_only=True)
class ExperimentConfig:
    """Everything that defines a run. The service stores exactly `to_dict()` of this object."""

    spec_version: int = SPEC_VERSION
    name: str = "experiment"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    cpu_threads: int = 0  # torch intra-op threads; 0: OMP_NUM_THREADS when set, else the measured default
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        if self.spec_version != SPEC_VERSION:
            _fail("spec_version", self.spec_version, f"this version reads spec_version {SPEC_VERSION}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            _fail("device", self.device, "must be auto, cpu, cuda or cuda:N")
        if self.cpu_threads < 0:
            _fail("cpu_threads", self.cpu_threads, "must be >= 0")
        if self.objective.kind != "ascl" and self.objective.views == 2:
            _fail("objective.views", 2, "two views are only defined for the ascl objective")

    @property
    def eval_eps(self) -> float:
        return self.attack.eps if self.eval.eps is None else self.eval.eps

    @property
    def eval_step_size(self) -> float:
        return self.attack.step_size if self.eval.step_size is None else self.eval.step_size

    def to_dict(self) -> dict[str, Any]:
        return _to_jsonable(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        return _from_dict(cls, data, "")

    def with_overrides(self, overrides: dict[str, Any]) -> ExperimentConfig:
        """A copy with dotted-path overrides applied, e.g. {"train.epochs": 3}."""
        data = self.to_dict()
        for path, value in overrides.items():
            _set_path(data, path, value)
        return ExperimentConfig.from_dict(data)


def _to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_to_jsonable(v) for v in value]
    return value


def _from_dict(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(prefix.rstrip(".") or "spec", f"must be an object (got {data!r})")
    hints, names = _fields_of(cls)
    kwargs: dict[str, Any] = {}
    for key, raw in data.items():
        if key not in names:
            raise ConfigError(prefix + key, unknown_name_message("field", key, names))
        kwargs[key] = _coerce(hints[key], raw, prefix + key)
    try:
        return cls(**kwargs)
    except ConfigError as error:
        raise error.within(prefix.rstrip(".")) if prefix else error from None


@functools.cache
def _fields_of(cls: type) -> tuple[dict[str, Any], list[str]]:
    """Resolved field types and names of a config class (resolving hints costs ~0.1 ms a class)."""
    return get_type_hints(cls), [f.name for f in dataclasses.fields(cls)]


def _coerce(hint: Any, raw: Any, path: str) -> Any:
    """Check a JSON value against a field's type hint and convert lists to tuples."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _from_dict(hint, raw, path + ".")
    origin, args = get_origin(hint), get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if raw is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, raw, path)
    if origin is Literal:
        if raw not in args:
            raise ConfigError(path, unknown_name_message("value", str(raw), [str(a) for a in args]))
        return raw
    if origin is tuple:
        if not isinstance(raw, list | tuple):
            raise ConfigError(path, f"must be a list (got {raw!r})")
        return tuple(_coerce(args[0], item, path) for item in raw)
    return _scalar(hint, raw, path)


def _scalar(hint: Any, raw: Any, path: str) -> Any:
    if hint is bool:
        if not isinstance(raw, bool):
            raise ConfigError(path, f"must be true or false (got {raw!r})")
        return raw
    if hint is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError(path, f"must be an integer (got {raw!r})")
        return raw
    if hint is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ConfigError(path, f"must be a number (got {raw!r})")
        return float(raw)
    if hint is str:
        if not isinstance(raw, str):
            raise ConfigError(path, f"must be a string (got {raw!r})")
        return raw
    raise TypeError(f"unsupported config type {hint!r} at {path}")


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    *sections, leaf = path.split(".")
    node = data
    for i, section in enumerate(sections):
        child = node.get(section)
        if not isinstance(child, dict):
            raise ConfigError(".".join(sections[: i + 1]), "is not a config section")
        node = child
    if leaf not in node:
        where = ".".join(sections) or "experiment"
        raise ConfigError(path, unknown_name_message(f"field of {where}", leaf, sorted(node)))
    node[leaf] = value


def parse_override(text: str) -> tuple[str, Any]:
    """'train.epochs=3' → ('train.epochs', 3). Values are JSON when they parse, else strings."""
    path, sep, raw = text.partition("=")
    if not sep or not path:
        raise ConfigError("--set", f"expected key=value (got {text!r})")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return path.strip(), value
