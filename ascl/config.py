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
NEEDS_NORMALIZE = ("matmul", "l1", "l2")  # the authors' code defines these only on normalised latents
SELF_NORMALIZING = ("cosine",)  # normalises itself; normalising first would be a no-op they forbid


def normalize_rule_violation(distance: str, normalize: bool) -> str | None:
    """The distance/normalize rule of the authors' code, or None when (distance, normalize) is legal."""
    if distance in NEEDS_NORMALIZE and not normalize:
        return f"distance {distance!r} requires normalize=true"
    if distance in SELF_NORMALIZING and normalize:
        return f"distance {distance!r} normalises itself; set normalize=false"
    return None


Norm = Literal["linf", "l2"]
Init = Literal["uniform", "normal", "zero"]
BnMode = Literal["train", "eval"]


def _fail(name: str, value: Any, problem: str) -> typing.NoReturn:
    raise ConfigError(name, f"{problem} (got {value!r})")


def knob(
    default: Any,
    doc: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    choices: tuple[str, ...] | None = None,
    kind: str | None = None,
) -> Any:
    """A config field with its description, numeric bounds and (for names) the valid choices: the one
    home of each, read by the validation below and by the API's OpenAPI schema (so /docs shows them).
    Literal-typed fields take their choices from the type; `kind` names the thing in errors."""
    bounds = {key: value for key, value in (("ge", ge), ("gt", gt), ("le", le)) if value is not None}
    return field(default=default, metadata={"doc": doc, "bounds": bounds, "choices": choices, "kind": kind})


@dataclass(frozen=True, slots=True)
class FieldRule:
    """What a field accepts, from its type and its knob: read by validation and by the API schema."""

    name: str
    hint: Any  # the resolved type
    default: Any  # dataclasses.MISSING for a section (built by its default factory)
    doc: str
    choices: tuple[str, ...] | None  # a Literal's values or the knob's choices
    kind: str  # how errors name the thing ('unknown model ...')
    bounds: dict[str, float]


@functools.cache
def field_rules(cls: type) -> tuple[FieldRule, ...]:
    hints, _ = _fields_of(cls)
    rules = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        choices = tuple(str(a) for a in get_args(hint)) if get_origin(hint) is Literal else f.metadata.get("choices")
        kind = f.metadata.get("kind") or f.name.replace("_", " ")
        doc = f.metadata.get("doc") or (hint.__doc__ or "").split("\n")[0]
        rules.append(FieldRule(f.name, hint, f.default, doc, choices, kind, f.metadata.get("bounds", {})))
    return tuple(rules)


def _check_fields(config: object) -> None:
    """Every field's choices and declared bounds; floats must be finite (JSON admits NaN and Infinity)."""
    for rule in field_rules(type(config)):  # type: ignore[arg-type]  # a config class is hashable
        value = getattr(config, rule.name)
        if rule.choices is not None:
            _choice(rule.name, value, rule.choices, rule.kind)
            continue
        values = value if isinstance(value, tuple) else (value,)
        for item in values:
            if isinstance(item, bool) or not isinstance(item, int | float):
                continue
            if isinstance(item, float) and not math.isfinite(item):
                _fail(rule.name, value, "must be a finite number")
            bounds = rule.bounds
            if "ge" in bounds and not item >= bounds["ge"]:
                _fail(rule.name, value, f"must be >= {bounds['ge']:g}")
            if "gt" in bounds and not item > bounds["gt"]:
                _fail(rule.name, value, f"must be > {bounds['gt']:g}")
            if "le" in bounds and not item <= bounds["le"]:
                _fail(rule.name, value, f"must be <= {bounds['le']:g}")


def _choice(name: str, value: str, options: tuple[str, ...], kind: str) -> None:
    if value not in options:
        raise ConfigError(name, unknown_name_message(kind, value, options))


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
        _check_fields(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    """Backbone and optional projection head. Inputs are [0, 1]; normalisation is inside the model."""

    arch: str = knob("resnet18", "the backbone", choices=MODELS, kind="model")
    feat_dim: int = knob(128, "projection head output; <= 0 means no head (z = penultimate features)", le=65_536)
    head: Literal["linear", "mlp"] = knob(
        "linear", "the projection head: one linear layer (the authors) or an MLP", kind="projection head"
    )

    def __post_init__(self) -> None:
        _check_fields(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class AttackConfig:
    """The training attack (ASCL_SPEC §2). Defaults are the authors' CIFAR-10 PGD-10."""

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
        _check_fields(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectiveConfig:
    """The training objective and its weights (ASCL_SPEC §3), named by meaning, not by the
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
    combine: int = knob(1, "two-view combine type (ASCL_SPEC §3.8)", ge=1, le=3)

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.kind == "ascl" and (problem := normalize_rule_violation(self.distance, self.normalize)):
            _fail("normalize", self.normalize, problem)


@dataclass(frozen=True, slots=True, kw_only=True)
class OptimConfig:
    """SGD and its learning-rate schedule (ASCL_SPEC §7.1)."""

    lr: float = knob(0.1, "peak learning rate", gt=0, le=100)
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
        _check_fields(self)
        if len(self.milestones) > 64:
            _fail("milestones", len(self.milestones), "at most 64 milestones")
        if list(self.milestones) != sorted(self.milestones):
            _fail("milestones", self.milestones, "must be ascending epochs >= 0")
        if self.nesterov and self.momentum == 0:
            _fail("nesterov", self.nesterov, "needs momentum > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    """Loop settings: length, batch, precision and the speed options."""

    epochs: int = knob(120, "training epochs", ge=1, le=100_000)
    batch_size: int = knob(128, "images per step before views are stacked (the global batch)", ge=1, le=65_536)
    precision: Literal["auto", "fp32", "bf16"] = knob(
        "auto", "auto: bf16 autocast on CUDA, fp32 on CPU", kind="precision"
    )
    channels_last: bool = knob(True, "channels_last memory format (CUDA only)")
    compile: Literal["none", "default", "reduce-overhead", "max-autotune"] = knob(
        "none", "torch.compile mode", kind="compile mode"
    )
    drop_last: bool = knob(True, "drop the last partial batch (static shapes)")
    post_step_bn_forwards: bool = knob(False, "the authors' two logging forwards after each step (§7.2)")
    log_every: int = knob(20, "steps between progress reports", ge=1, le=1_000_000)
    validate_every: int = knob(1, "epochs between validation passes", ge=1, le=100_000)

    def __post_init__(self) -> None:
        _check_fields(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalConfig:
    """Validation during training and the final robustness evaluation (ASCL_SPEC §8).

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

    def __post_init__(self) -> None:
        _check_fields(self)
        if len(self.eps_sweep) > 64:
            _fail("eps_sweep", len(self.eps_sweep), "at most 64 radii")


@dataclass(frozen=True, slots=True, kw_only=True)
class ExperimentConfig:
    """Everything that defines a run. The service stores exactly `to_dict()` of this object."""

    spec_version: int = knob(SPEC_VERSION, "the config format version")
    name: str = knob("experiment", "the run's name")
    seed: int = knob(0, "seeds the weights and every epoch's randomness", ge=0, le=2**31 - 1)
    device: str = knob("auto", "auto (CUDA when present), cpu, cuda or cuda:N")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        _check_fields(self)
        if len(self.name) > 200:
            _fail("name", self.name[:40] + "...", "at most 200 characters")
        if self.spec_version != SPEC_VERSION:
            _fail("spec_version", self.spec_version, f"this version reads spec_version {SPEC_VERSION}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            _fail("device", self.device, "must be auto, cpu, cuda or cuda:N")
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
