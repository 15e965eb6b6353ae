"""The one configuration: params.yaml, loaded once into a typed :class:`Params`.

Every section forbids unknown keys; a bad value stops with a message naming the key,
the value and the valid choices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from al_core.errors import ConfigError, did_you_mean
from al_core.stopping import StopParams

DATASETS = ("mnist1d", "digits", "mnist", "table")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetParams(_Section):
    """Where the pool and the test split come from."""

    name: Literal["mnist1d", "digits", "mnist", "table"] = "mnist1d"
    #: mnist1d: samples generated for the pool; mnist/digits/table: cap on the pool (null = all)
    pool_size: int | None = Field(default=4000, ge=1)
    #: mnist1d: samples generated for the test split; others: cap on the test split (null = all)
    test_size: int | None = Field(default=1000, ge=1)
    #: mnist: directory with the IDX gz files; table: the Parquet/CSV file with features and sample_id
    path: str | None = None
    #: table: a labeled test file (same columns plus the label column)
    test_path: str | None = None
    #: table without test_path, and digits: fraction of labeled rows held out for testing
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    id_column: str = "sample_id"
    label_column: str = "label"
    #: table: feature columns (null = every numeric column but id and label)
    feature_columns: list[str] | None = None
    #: a labeled validation split of this many samples taken out of the pool by `prepare` (like the
    #: test split; used for early stopping, never queued). null = split val_fraction off the labeled set
    val_size: int | None = Field(default=None, ge=1)
    #: the seed of the data preparation (generation, splits)
    seed: int = 0


class ModelParams(_Section):
    #: auto picks cnn1d for mnist1d, cnn2d for images (mnist, digits), mlp for tables
    #: bbald_cnn: the MNIST CNN of the BatchBALD paper (Kirsch et al. 2019), for images of 16×16 or more
    arch: Literal["auto", "mlp", "cnn1d", "cnn2d", "bbald_cnn"] = "auto"
    hidden: int = Field(default=128, ge=1)
    dropout: float = Field(default=0.25, ge=0.0, lt=1.0)


class TrainingParams(_Section):
    epochs: int = Field(default=100, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=1e-3, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    #: epochs without validation improvement before stopping
    patience: int = Field(default=10, ge=1)
    #: what early stopping watches: validation loss (better-calibrated probabilities for the
    #: uncertainty scores) or validation accuracy (the BatchBALD protocol, Kirsch et al. 2019)
    early_stopping: Literal["loss", "accuracy"] = "loss"
    #: optimizer steps trained at least before early stopping may stop (small labeled sets)
    min_steps: int = Field(default=300, ge=0)
    #: fraction of the labeled set held out for early stopping
    val_fraction: float = Field(default=0.2, ge=0.0, lt=1.0)
    #: samples per epoch (null = one pass over the labeled set); a small labeled set is cycled to this
    #: length, like batchbald_redux's RandomFixedLengthSampler (Kirsch et al. 2019)
    epoch_samples: int | None = Field(default=None, ge=1)
    device: str = "auto"
    #: rows per inference chunk; null = 256 on a CPU (cache-sized), 4096 on a GPU
    chunk_size: int | None = Field(default=None, ge=1)
    #: CPU threads for torch (null = torch's default). Small models train fastest on 1 thread,
    #: and far faster than on oversubscribed cores when other processes compete.
    cpu_threads: int | None = Field(default=None, ge=1)


class CealParams(_Section):
    """CEAL pseudo-labelling (Wang et al. 2016): entropy threshold δ_t = delta0 − decay·t."""

    delta0: float = Field(default=0.05, ge=0.0)
    decay: float = Field(default=0.0033, ge=0.0)
    #: weight of a pseudo-labeled sample's loss relative to a human-labeled one
    weight: float = Field(default=1.0, gt=0.0)


class AcquisitionParams(_Section):
    strategy: str = "entropy"
    #: samples queried per round
    batch_size: int = Field(default=40, ge=1)
    #: size of the cold-start batch (round 0), chosen at random with initial_seed
    initial_size: int = Field(default=40, ge=1)
    initial_seed: int = 0
    #: simulation only: draw the cold-start batch class-balanced from the ground truth (BatchBALD protocol)
    initial_balanced: bool = False
    #: rounds a campaign runs (each trains, scores and queries)
    rounds: int = Field(default=6, ge=1)
    #: stop once this many labels are spent (null = rounds decide)
    label_budget: int | None = Field(default=None, ge=1)
    #: MC-dropout passes for bald, batchbald, variation_ratio, mean_std
    mc_samples: int = Field(default=20, ge=2)
    #: score a random subset of this many pool samples per round (null = the whole pool)
    pool_subset: int | None = Field(default=None, ge=1)
    #: BatchBALD: sampled joint configurations once C^n exceeds this
    batchbald_samples: int = Field(default=10_000, ge=1)
    ceal: CealParams = CealParams()
    #: stopping criteria (al_core/stopping.py): computed every round, the enabled ones stop a campaign
    stop: StopParams = StopParams()

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, v: str) -> str:
        from al_core.acquisition.base import validate_strategy_name

        validate_strategy_name(v)
        return v


class QueueParams(_Section):
    #: folder: a folder in the workspace; s3: an S3 prefix (plus a local copy in the workspace's queue/ folder)
    backend: Literal["folder", "s3"] = "folder"
    #: folder (relative to the workspace) or s3://bucket/prefix
    path: str = "queue"
    #: how returned labels name a class: by its name, or by its index in the class list
    label_format: Literal["name", "index"] = "name"
    #: predictions shown per exported sample
    top_k: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _path_fits_backend(self) -> QueueParams:
        is_s3 = self.path.startswith("s3://")
        if self.backend == "s3" and not (is_s3 and len(self.path) > len("s3://")):
            raise ValueError(f"queue.path = {self.path!r}: the s3 backend needs s3://bucket/prefix")
        if self.backend == "folder" and is_s3:
            raise ValueError(f"queue.path = {self.path!r} is an S3 URL: set queue.backend: s3 as well")
        return self


class TrackingParams(_Section):
    #: MLflow tracking URI; null = SQLite file mlflow.db inside the workspace (or $MLFLOW_TRACKING_URI)
    uri: str | None = None
    #: experiment name; null = the workspace directory's name
    experiment: str | None = None
    #: registered model name; null = "<experiment>-model"
    model_name: str | None = None
    log_model: bool = True


class VersioningParams(_Section):
    #: DVC remote URL (a directory or s3://...); null = .dvc-remote inside the workspace
    remote: str | None = None
    push: bool = True


class ScheduleParams(_Section):
    """When rounds run by themselves under `alp serve` (Prefect deployments; editable in the UI)."""

    #: cron expression of scheduled rounds (e.g. "0 6 * * 1-5"); null = no schedule, rounds on label arrival only
    round_cron: str | None = None
    #: seconds between two looks at the queue's inbox (queue/inbox/ or the S3 inbox prefix)
    inbox_interval_s: int = Field(default=60, ge=1)
    #: the next round starts once this share of the newest batch is labeled (1.0 = the whole batch) ...
    trigger_fraction: float = Field(default=1.0, gt=0.0, le=1.0)
    #: ... and, below the whole batch, once the batch has waited this many seconds since its export
    trigger_wait_s: int = Field(default=0, ge=0)

    @field_validator("round_cron")
    @classmethod
    def _cron_fields(cls, v: str | None) -> str | None:
        if v is not None and len(v.split()) not in (5, 6):
            raise ValueError(f"schedule.round_cron = {v!r}: expected a cron expression of 5 fields, e.g. '0 6 * * *'")
        return v


class Params(_Section):
    """params.yaml."""

    seed: int = 0
    dataset: DatasetParams = DatasetParams()
    model: ModelParams = ModelParams()
    training: TrainingParams = TrainingParams()
    acquisition: AcquisitionParams = AcquisitionParams()
    queue: QueueParams = QueueParams()
    tracking: TrackingParams = TrackingParams()
    versioning: VersioningParams = VersioningParams()
    schedule: ScheduleParams = ScheduleParams()

    @model_validator(mode="after")
    def _dataset_paths(self) -> Params:
        if self.dataset.name == "table" and not self.dataset.path:
            raise ValueError("dataset.path is required for dataset.name = table (a Parquet or CSV file)")
        return self

    def resolved_arch(self) -> str:
        if self.model.arch != "auto":
            return self.model.arch
        return {"mnist1d": "cnn1d", "mnist": "cnn2d", "digits": "cnn2d"}.get(self.dataset.name, "mlp")


def _format_error(err: dict[str, Any], source: str) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    value = err.get("input")
    kind = err["type"]
    if kind == "extra_forbidden":
        section = _section_for(err["loc"][:-1])
        valid = sorted(section.model_fields) if section else []
        hint = did_you_mean(str(err["loc"][-1]), valid)
        return f"{source}: unknown key '{loc}'.{hint} Valid keys here: {', '.join(valid)}"
    msg = err["msg"].removeprefix("Value error, ")
    if isinstance(value, (dict, list)) or (value is None and kind == "missing"):
        return f"{source}: {loc}: {msg}"
    return f"{source}: {loc} = {value!r} is invalid: {msg}"


def _section_for(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Params
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return None
        model = field.annotation
    return model


def parse_params(data: dict[str, Any] | None, source: str = "params.yaml") -> Params:
    """Validate a params mapping; raise :class:`ConfigError` naming key, value and valid choices."""
    from al_core.errors import UnknownStrategyError

    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    try:
        return Params.model_validate(data)
    except UnknownStrategyError as exc:  # raised inside the strategy validator
        raise ConfigError(f"{source}: acquisition.strategy: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError("\n".join(_format_error(e, source) for e in exc.errors())) from exc


def read_yaml(path: Path, missing_hint: str) -> Any:
    """Parse a YAML file; a missing file or bad YAML is a :class:`ConfigError` saying what to do."""
    if not path.is_file():
        raise ConfigError(f"{path} does not exist: {missing_hint}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc


def load_params(path: str | Path) -> Params:
    """Read and validate params.yaml."""
    path = Path(path)
    data = read_yaml(path, "run `alp init DIR` to create a workspace with a params.yaml")
    return parse_params(data, str(path))


def with_overrides(params: Params, **dotted: Any) -> Params:
    """Return ``params`` with dotted keys replaced (``{"acquisition.strategy": "bald"}``), validated."""
    data = params.model_dump()
    for key, value in dotted.items():
        node = data
        *parents, last = key.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return parse_params(data, "overrides")


def dump_params(params: Params) -> str:
    """params.yaml text for ``params`` (every key, defaults included)."""
    return yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False)
