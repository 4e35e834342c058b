"""params.yaml → one frozen, validated config object; every mistake is one line naming the key."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from unmix.errors import ConfigError, first_line
from unmix.names import MIX_NAMES

SOURCES = ("shapes", "cifar10", "imagefolder")
ARCHS = ("seed", "unet")
LOSSES = ("fixed", "pit")
SCHEDULES = ("constant", "onecycle")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
OPTIMIZERS = ("adam", "muon")
ATTENTION_HEADS = 4  # of unmix.model.networks.GlobalContext


def _choice(options: tuple[str, ...]) -> dict[str, Any]:
    return {"choices": options}


def _at_least(minimum: float) -> dict[str, Any]:
    return {"min": minimum}


def _between(minimum: int, maximum: int) -> dict[str, Any]:
    return {"min": minimum, "max": maximum}


@dataclass(frozen=True)
class DataConfig:
    """Where images come from and which of them train, validate and test."""

    source: str = field(default="shapes", metadata=_choice(SOURCES))
    # cifar10: folder with cifar-10-batches-py/ or cifar-10-python.tar.gz (downloaded there if
    # absent); imagefolder: root of <class>/<image> or train/<class>/<image> (+ test/...).
    path: str | None = None
    shapes_train: int = field(default=50_000, metadata=_at_least(2))  # images generated, train split
    shapes_test: int = field(default=10_000, metadata=_at_least(2))  # images generated, test split
    seed: int = field(default=0, metadata=_at_least(0))  # generates shapes, draws subsets, fixes pairs
    n_train: int = field(default=1000, metadata=_at_least(2))
    n_valid: int = field(default=256, metadata=_at_least(2))  # two images per validation pair
    n_test: int = field(default=1000, metadata=_at_least(2))  # two images per test pair


@dataclass(frozen=True)
class TrackingConfig:
    """Where MLflow runs go; MLFLOW_TRACKING_URI, when set, wins over `uri`."""

    enabled: bool = True
    uri: str | None = None  # None: sqlite mlflow.db at the repository root
    experiment: str = "unmix"


@dataclass(frozen=True)
class FiguresConfig:
    """How render-figures draws; changing these re-runs that stage alone."""

    n_pairs: int = field(default=8, metadata=_at_least(1))  # rows of each reconstruction grid
    dpi: int = field(default=100, metadata=_at_least(20))


@dataclass(frozen=True)
class ResumeConfig:
    """Resume checkpoints; outside `sets`, so changing them retrains nothing."""

    checkpoint_every: int = field(default=1, metadata=_at_least(0))  # epochs; 0 = no checkpoints


@dataclass(frozen=True)
class DistributedConfig:
    """How many processes train each set: 1, or N ranks started as `torchrun --standalone` does."""

    processes: int = field(default=1, metadata=_at_least(1))


@dataclass(frozen=True)
class SetConfig:
    """One named parameter set: a model, a mixing rule, a loss and a training budget."""

    arch: str = field(default="seed", metadata=_choice(ARCHS))
    width: int = field(default=32, metadata=_at_least(4))  # unet: channels at full resolution
    top_width: int | None = field(default=None, metadata=_at_least(1))  # unet: narrower full resolution (null: width)
    depth: int = field(default=3, metadata=_between(1, 4))  # unet: stride-2 steps (32 → 32 / 2^depth)
    attention: bool = False  # unet: self-attention over the coarsest (4×4 at depth 3) features
    consistency: bool = False  # project outputs so they mix back to the input exactly
    mix: str = field(default="quarter_sum", metadata=_choice(MIX_NAMES))
    loss: str = field(default="fixed", metadata=_choice(LOSSES))
    epochs: int = field(default=10, metadata=_at_least(1))
    batch_size: int = field(default=192, metadata=_at_least(2))  # images per step, two per pair
    lr: float = field(default=5e-4, metadata={"min": 0.0, "exclusive": True})  # Adam step size (peak)
    schedule: str = field(default="constant", metadata=_choice(SCHEDULES))  # onecycle: warm up, anneal
    seed: int = field(default=0, metadata=_between(0, 2**64 - 1))  # init, dropout, batch order (torch's range)
    flip: bool = False  # random horizontal flips of training images
    fresh_pairs: bool = True  # new random pairs every batch (the seed's way); else fixed pairs
    validate_every: int = field(default=1, metadata=_at_least(1))  # epochs between validations
    log_images_every: int = field(default=10, metadata=_at_least(0))  # epochs; 0 = last epoch only
    device: str = field(default="auto", metadata=_choice(DEVICES))  # auto: cuda when there is one
    compile: bool = False  # train through torch.compile (pays off on CUDA, not on a small CPU)
    # Training steps' arithmetic: auto = bf16 on CUDA, float32 on the CPU; bf16 on a CPU with
    # native bf16 (AVX512-BF16, AMX) about doubles its speed.
    precision: str = field(default="auto", metadata=_choice(PRECISIONS))
    test_flips: bool = False  # validate and evaluate on the average of the mixture's and its mirror's outputs
    # Exponential moving average of the weights, per step (0: none); the averaged weights are
    # validated, saved and evaluated.
    ema: float = field(default=0.0, metadata=_between(0, 0.9999))
    # muon (unet): Muon steps for the convolutions that feed a BatchNorm, Adam (`lr`) for the
    # rest (unmix.training.optimizers); both follow `schedule`.
    optimizer: str = field(default="adam", metadata=_choice(OPTIMIZERS))
    # Muon's step (peak), relative to each weight's norm: airbench94_muon's 0.24.
    muon_lr: float = field(default=0.24, metadata={"min": 0.0, "exclusive": True})
    # unet: the first epochs train on 16×16 pairs (each image 2×2-averaged), a quarter of the
    # arithmetic; the rest, and every validation, at 32×32.
    low_res_epochs: int = field(default=0, metadata=_at_least(0))
    # Distillation: a trained model file (a longer run's models/<set>.pt) whose outputs for
    # each 32×32 training mixture are targets beside the truth (unmix.training.distillation);
    # low_res_epochs train on the truth alone (a teacher never saw 16×16 mixtures). Like
    # data.path it is read as it is, not a DVC dependency: a new teacher takes a new file name.
    teacher: str | None = None
    # The teacher's share of the loss: (1 - w) · loss(truth) + w · loss(teacher's outputs).
    teacher_weight: float = field(default=0.5, metadata=_between(0, 1))


@dataclass(frozen=True)
class Config:
    """The whole params.yaml."""

    data: DataConfig
    tracking: TrackingConfig
    figures: FiguresConfig
    sets: dict[str, SetConfig]
    resume: ResumeConfig = ResumeConfig()
    distributed: DistributedConfig = DistributedConfig()

    def set(self, name: str) -> SetConfig:
        """The parameter set called `name`, or a one-line error listing the known ones."""
        if name not in self.sets:
            raise ConfigError(f"sets.{name}: no such parameter set; known: {', '.join(self.sets)}")
        return self.sets[name]


def load_config(path: Path | str = "params.yaml") -> Config:
    """Read and validate a params file."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start}); expected a YAML file") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({first_line(error)})") from None
    return parse_config(raw, source=str(path))


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice: PyYAML would keep the last one silently."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, typing.Hashable):
                continue  # PyYAML refuses it itself, below
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} on line {key_node.start_mark.line + 1}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def parse_config(raw: Any, source: str = "params.yaml") -> Config:
    """Validate a params mapping (as read from YAML) into a Config."""
    where = f"{source}: "
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}expected a mapping with data, tracking, figures and sets")
    _reject_unknown(raw, {"data", "tracking", "figures", "sets", "resume", "distributed"}, where, "")
    sets_raw = raw.get("sets")
    if not isinstance(sets_raw, dict) or not sets_raw:
        raise ConfigError(f"{where}sets: expected a mapping of at least one named parameter set")
    sets = {}
    for name, body in sets_raw.items():
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"{where}sets.{name}: set names must be letters, digits, '_' or '-'")
        sets[name] = _build(SetConfig, body, where, f"sets.{name}")
    config = Config(
        data=_build(DataConfig, raw.get("data", {}), where, "data"),
        tracking=_build(TrackingConfig, raw.get("tracking", {}), where, "tracking"),
        figures=_build(FiguresConfig, raw.get("figures", {}), where, "figures"),
        sets=sets,
        resume=_build(ResumeConfig, raw.get("resume", {}), where, "resume"),
        distributed=_build(DistributedConfig, raw.get("distributed", {}), where, "distributed"),
    )
    _check_consistency(config, where)
    return config


def _check_consistency(config: Config, where: str) -> None:
    data = config.data
    if data.source in ("cifar10", "imagefolder") and not data.path:
        raise ConfigError(f"{where}data.path: required for data.source={data.source}")
    if data.source == "shapes":
        if data.n_train + data.n_valid > data.shapes_train:
            raise ConfigError(
                f"{where}data.n_train + data.n_valid = {data.n_train + data.n_valid}: more than the "
                f"{data.shapes_train} training images data.shapes_train generates"
            )
        if data.n_test > data.shapes_test:
            raise ConfigError(
                f"{where}data.n_test = {data.n_test}: more than the {data.shapes_test} test images "
                "data.shapes_test generates"
            )
    processes = config.distributed.processes
    for name, set_config in config.sets.items():
        coarsest = set_config.width * 2**set_config.depth
        if set_config.arch == "unet" and set_config.attention and coarsest % ATTENTION_HEADS:
            raise ConfigError(
                f"{where}sets.{name}.attention: the {coarsest} channels of the coarsest scale (width · 2^depth) "
                f"cannot be split into {ATTENTION_HEADS} attention heads; use a width divisible by "
                f"{ATTENTION_HEADS // math.gcd(ATTENTION_HEADS, 2**set_config.depth)}"
            )
        _check_levers(set_config, f"{where}sets.{name}")
        if set_config.batch_size // 2 < processes:
            raise ConfigError(
                f"{where}sets.{name}.batch_size = {set_config.batch_size}: {set_config.batch_size // 2} pairs per "
                f"step cannot be shared by distributed.processes = {processes}; expected at least "
                f"{2 * processes}"
            )
    if config.figures.n_pairs > data.n_test // 2:
        raise ConfigError(
            f"{where}figures.n_pairs = {config.figures.n_pairs}: more than the "
            f"{data.n_test // 2} test pairs data.n_test = {data.n_test} makes"
        )


def _check_levers(set_config: SetConfig, name: str) -> None:
    """Muon and low-resolution epochs need the unet; the low-resolution ones leave full size some
    epochs and take no teacher; a teacher has a share of the loss."""
    if set_config.optimizer == "muon" and set_config.arch != "unet":
        raise ConfigError(
            f"{name}.optimizer: muon steps the convolutions that feed a BatchNorm; arch {set_config.arch} "
            "has none (use arch unet)"
        )
    if set_config.teacher is not None and set_config.teacher_weight == 0:
        raise ConfigError(
            f"{name}.teacher_weight = 0: the teacher {set_config.teacher} would be loaded and run "
            "for nothing; expected a weight > 0, or teacher: null"
        )
    low_res = set_config.low_res_epochs
    if not low_res:
        return
    if set_config.arch != "unet":
        raise ConfigError(f"{name}.low_res_epochs = {low_res}: arch {set_config.arch} takes 32×32 images only")
    if set_config.depth > 3:
        # 16 / 2^4 = 1: the coarsest 3×3 convolutions would see their centre alone, and a
        # BatchNorm over 1×1 features fails on a batch of one pair (an epoch's last, say).
        raise ConfigError(
            f"{name}.low_res_epochs = {low_res}: depth {set_config.depth} halves 16×16 pairs down to 1×1; "
            "expected depth <= 3"
        )
    if low_res >= set_config.epochs:
        raise ConfigError(
            f"{name}.low_res_epochs = {low_res}: expected fewer than epochs = {set_config.epochs}; "
            "the rest train at 32×32"
        )


def _build(cls: type, raw: Any, where: str, prefix: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}{prefix}: expected a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _reject_unknown(raw, set(fields), where, prefix + ".")
    hints = typing.get_type_hints(cls)
    values = {
        name: _check_value(raw[name], hints[name], fields[name].metadata, f"{where}{prefix}.{name}") for name in raw
    }
    return cls(**values)


def _reject_unknown(raw: dict, known: set[str], where: str, prefix: str) -> None:
    unknown = sorted(str(key) for key in raw if key not in known)
    if unknown:
        raise ConfigError(f"{where}{prefix}{unknown[0]}: unknown key; expected one of {', '.join(sorted(known))}")


def _check_value(value: Any, hint: Any, rules: typing.Mapping[str, Any], name: str) -> Any:
    optional = isinstance(hint, types.UnionType) and type(None) in hint.__args__
    if optional:
        if value is None:
            return None
        (hint,) = [arg for arg in hint.__args__ if arg is not type(None)]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
    elif hint is float:
        value = _yaml_float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        value = float(value)
    elif hint is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name}: expected a non-empty string, got {value!r}")
    if "choices" in rules and value not in rules["choices"]:
        raise ConfigError(f"{name}: expected one of {', '.join(rules['choices'])}, got {value!r}")
    if "min" in rules:
        minimum = rules["min"]
        too_small = value <= minimum if rules.get("exclusive") else value < minimum
        if too_small:
            relation = ">" if rules.get("exclusive") else ">="
            raise ConfigError(f"{name}: expected a value {relation} {minimum}, got {value!r}")
    if "max" in rules and value > rules["max"]:
        raise ConfigError(f"{name}: expected a value <= {rules['max']}, got {value!r}")
    return value


def _yaml_float(value: Any) -> Any:
    """YAML 1.1 reads 5e-4 (no dot) as a string; take it as the number it was meant to be."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value
