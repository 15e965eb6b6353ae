"""The one configuration: params.yaml, loaded once into a typed :class:`Params`.

Every section forbids unknown keys; a bad value stops with a message naming the key,
the value and the valid choices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from al_core.errors import ConfigError, did_you_mean
from al_core.sections import Section
from al_core.stopping import StopParams


def _dataset_union() -> tuple[Any, tuple[str, ...]]:
    """The ``dataset`` section: one params model per registered data source, told apart by ``name``."""
    from al_core.sources import SOURCES

    models = tuple(source.params for _, source in SOURCES.items())
    return Annotated[Union[models], Field(discriminator="name")], SOURCES.names()  # noqa: UP007


#: the ``dataset`` section's type (a discriminated union on ``dataset.name``) and the source names
DatasetParams, DATASETS = _dataset_union()
#: keys that the single dataset section of earlier params.yaml files held for every source, with
#: their old defaults: dropped where the source has no such key (any other value is still refused)
LEGACY_DATASET_DEFAULTS: dict[str, Any] = {
    "path": None, "test_path": None, "test_fraction": 0.2, "id_column": "sample_id",
    "label_column": "label", "feature_columns": None, "pool_size": 4000, "test_size": 1000,
}  # fmt: skip


class ModelParams(Section):
    #: a registered architecture (al_core/architectures/), or auto: the data source's choice
    arch: str = "auto"
    hidden: int = Field(default=128, ge=1)
    dropout: float = Field(default=0.25, ge=0.0, lt=1.0)
    #: arch custom: "package.module:build" or "path/to/file.py:build"; build(input_shape, n_classes) -> nn.Module
    factory: str | None = None
    #: a frozen pretrained backbone (TorchScript .pt, or weights with backbone_factory): prepare computes
    #: its features once per sample, and only the head (arch) is trained each round
    backbone: str | None = None
    #: backbone given as weights (loaded with weights_only=True): "module:fn" or "file.py:fn", fn() -> nn.Module
    backbone_factory: str | None = None

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, v: str) -> str:
        from al_core.architectures import ARCHITECTURES

        if v != "auto" and v not in ARCHITECTURES.names():
            raise ValueError(f"not an architecture.{did_you_mean(v, ARCHITECTURES.names())} "
                             f"Valid: auto, {', '.join(ARCHITECTURES.names())}")  # fmt: skip
        return v

    @model_validator(mode="after")
    def _factory_fits_arch(self) -> ModelParams:
        if self.arch == "custom" and not self.factory:
            raise ValueError("model.arch = custom needs model.factory: 'package.module:build' or 'file.py:build'")
        if self.factory and self.arch != "custom":
            raise ValueError(f"model.factory is set but model.arch = {self.arch}: set model.arch: custom")
        if self.backbone_factory and not self.backbone:
            raise ValueError("model.backbone_factory needs model.backbone (the weights file it loads)")
        return self


class TrainingParams(Section):
    epochs: int = Field(default=100, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=1e-3, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    #: epochs without validation improvement before stopping
    patience: int = Field(default=10, ge=1)
    #: what early stopping watches: validation loss (better-calibrated probabilities for the
    #: uncertainty scores) or validation accuracy (the BatchBALD protocol, Kirsch et al. 2019)
    early_stopping: Literal["loss", "accuracy"] = "loss"
    #: optimizer steps trained at least (small labeled sets give 1–2 steps per epoch), also before
    #: early stopping may stop; more steps measured better on small sets (benchmarks/RESULTS.md)
    min_steps: int = Field(default=1500, ge=0)
    #: fraction of the labeled set held out for early stopping; 0 (default) trains on every label for a
    #: fixed schedule: a small split stopped too early and cost 20% of scarce labels (benchmarks/RESULTS.md)
    val_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    #: samples per epoch (null = one pass over the labeled set); a small labeled set is cycled to this
    #: length, like batchbald_redux's RandomFixedLengthSampler (Kirsch et al. 2019)
    epoch_samples: int | None = Field(default=None, ge=1)
    #: without a validation split (val_fraction 0, no dataset.val_size) the schedule is fixed:
    #: swa averages the weights of its last quarter (Izmailov et al. 2018)
    weight_averaging: Literal["none", "swa"] = "none"
    device: str = "auto"
    #: rows per inference chunk; null = 256 on a CPU (cache-sized), 4096 on a GPU
    chunk_size: int | None = Field(default=None, ge=1)
    #: CPU threads for torch (null = torch's default). Small models train fastest on 1 thread,
    #: and far faster than on oversubscribed cores when other processes compete.
    cpu_threads: int | None = Field(default=None, ge=1)


class CealParams(Section):
    """CEAL pseudo-labelling (Wang et al. 2016): entropy threshold δ_t = delta0 − decay·t."""

    delta0: float = Field(default=0.05, ge=0.0)
    decay: float = Field(default=0.0033, ge=0.0)
    #: weight of a pseudo-labeled sample's loss relative to a human-labeled one
    weight: float = Field(default=1.0, gt=0.0)


class AcquisitionParams(Section):
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


class LabelStudioQueueParams(Section):
    """``queue.backend: label-studio``: where Label Studio is and which project holds the tasks
    (the API key comes from ``ALP_LABEL_STUDIO_TOKEN`` only, never from here)."""

    #: Label Studio's address, e.g. http://127.0.0.1:8080 (null: $ALP_LABEL_STUDIO_URL)
    url: str | None = None
    #: an existing project, by id or title (null: alp creates "alp <workspace>" with its labeling config)
    project: int | str | None = None
    #: where Label Studio reaches `alp webhook` (alp registers it; null: annotations come by polling only)
    webhook_url: str | None = None
    #: how an image pool's files reach the annotator's browser (tasks/media.py): inline (a PNG of the
    #: decoded sample in the task), served (`alp webhook` serves the original file at a signed URL),
    #: presigned (an S3 presigned URL of an s3:// uri); auto: served when `media_url` or `webhook_url`
    #: gives alp's address, else presigned for s3:// uris, else inline (always inline without uris)
    media: Literal["auto", "inline", "served", "presigned"] = "auto"
    #: where the annotators' browsers reach `alp webhook` for served files (null: webhook_url's origin)
    media_url: str | None = None
    #: lifetime of a presigned URL, seconds (SigV4 allows at most 7 days)
    presign_expiry_s: int = Field(default=604_800, ge=60, le=604_800)


class QueueParams(Section):
    #: a registered queue backend (tasks/queues/): folder (default), s3, label-studio
    backend: str = "folder"
    #: the queue's folder in the workspace (its local copy for the s3 and label-studio backends), or s3://bucket/prefix
    path: str = "queue"
    #: how returned labels name a class: by its name, or by its index in the class list
    label_format: Literal["name", "index"] = "name"
    #: predictions shown per exported sample
    top_k: int = Field(default=3, ge=1)
    #: also export each sample's feature vector in batch.jsonl (a uri pool's lines carry its uri anyway)
    features: bool = False
    label_studio: LabelStudioQueueParams = LabelStudioQueueParams()

    @property
    def local_path(self) -> str:
        """The workspace's local queue folder: ``path`` unless that is a URL (then ``queue``)."""
        return "queue" if "://" in self.path else self.path


class ScoringParams(Section):
    """How a round reads and scores the pool (big pools: README "Big pools")."""

    #: local: shards scored one after another in the round's process; dask: as Prefect tasks on a
    #: Dask cluster (a LocalCluster of `workers` processes, or the scheduler at `address`)
    engine: Literal["local", "dask"] = "local"
    #: pool rows per shard (whole Parquet row groups of data/pool.parquet, 65,536 rows each)
    shard_rows: int = Field(default=65_536, ge=1)
    #: memory for a batch-aware strategy's candidate set (badge, coreset, batchbald): all candidates
    #: when their inputs fit, else `candidates` decides which M do
    memory_mb: int = Field(default=512, ge=1)
    #: top: the M best by `candidate_score` (one extra pass over the pool); random: a seeded random M
    candidates: Literal["top", "random"] = "top"
    candidate_score: Literal["entropy", "margin", "least_confidence"] = "entropy"
    #: at most this many candidates (null = as many as memory_mb holds)
    candidate_size: int | None = Field(default=None, ge=1)
    #: dask: worker processes of the LocalCluster alp starts (ignored with `address`)
    workers: int = Field(default=2, ge=1)
    #: dask: torch threads per worker
    threads_per_worker: int = Field(default=1, ge=1)
    #: dask: an existing scheduler, e.g. tcp://10.0.0.5:8786 (null = start a LocalCluster)
    address: str | None = None
    #: dask: resources each shard task needs, e.g. {GPU: 1} (workers started with --resources GPU=1)
    resources: dict[str, float] = Field(default_factory=dict)


class TrackingParams(Section):
    #: MLflow tracking URI; null = SQLite file mlflow.db inside the workspace (or $MLFLOW_TRACKING_URI)
    uri: str | None = None
    #: experiment name; null = the workspace directory's name
    experiment: str | None = None
    #: registered model name; null = "<experiment>-model"
    model_name: str | None = None
    log_model: bool = True


class VersioningParams(Section):
    #: DVC remote URL (a directory or s3://...); null = .dvc-remote inside the workspace
    remote: str | None = None
    push: bool = True


class ScheduleParams(Section):
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


class Params(Section):
    """params.yaml."""

    seed: int = 0
    dataset: DatasetParams = Field(default_factory=lambda: _default_dataset())
    model: ModelParams = ModelParams()
    training: TrainingParams = TrainingParams()
    acquisition: AcquisitionParams = AcquisitionParams()
    queue: QueueParams = QueueParams()
    scoring: ScoringParams = ScoringParams()
    tracking: TrackingParams = TrackingParams()
    versioning: VersioningParams = VersioningParams()
    schedule: ScheduleParams = ScheduleParams()

    @model_validator(mode="before")
    @classmethod
    def _legacy_dataset_keys(cls, data: Any) -> Any:
        section = data.get("dataset") if isinstance(data, dict) else None
        if not isinstance(section, dict) or section.get("name", "mnist1d") not in DATASETS:
            return data
        from al_core.sources import get_source

        fields = get_source(section.get("name", "mnist1d")).params.model_fields
        kept = {k: v for k, v in section.items() if k in fields or LEGACY_DATASET_DEFAULTS.get(k, ...) != v}
        return {**data, "dataset": kept}

    def resolved_arch(self, input_shape: tuple[int, ...] | None = None) -> str:
        """``model.arch``; ``auto`` = the data source's choice for one sample's ``input_shape`` (when
        known: [C, L] → cnn1d, [C, H, W] → cnn2d), mlp on a backbone's features."""
        from al_core.sources import get_source

        if self.model.arch != "auto":
            return self.model.arch
        if self.model.backbone:
            return "mlp"
        return get_source(self.dataset.name).arch_for(self.dataset, input_shape)


def _default_dataset() -> Any:
    from al_core.sources import dataset_params

    return dataset_params(name="mnist1d")


def _format_error(err: dict[str, Any], source: str) -> str:
    loc = ".".join(str(p) for p in _error_loc(err["loc"])) or "(top level)"
    value = err.get("input")
    kind = err["type"]
    if kind == "union_tag_invalid":  # dataset.name is not a registered data source
        tag = str(err.get("ctx", {}).get("tag", ""))
        hint = did_you_mean(tag, DATASETS)
        return f"{source}: {loc}.name = {tag!r} is not a data source.{hint} Valid: {', '.join(DATASETS)}"
    if kind == "union_tag_not_found":  # a dataset section without its name
        return f"{source}: {loc}.name is missing: name the data source, one of {', '.join(DATASETS)}"
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
        if model is Params and part == "dataset":
            model = _DatasetTag
            continue
        if model is _DatasetTag:  # the union's tag: the source's own params model
            from al_core.sources import get_source

            model = get_source(str(part)).params
            continue
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return None
        model = field.annotation
    return model


class _DatasetTag(BaseModel):
    """Marks the ``dataset`` union while walking an error's location (its next part is the tag)."""


def _error_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """An error's location without the union's tag: ('dataset', 'table', 'path') → ('dataset', 'path')."""
    return (loc[0], *loc[2:]) if len(loc) > 1 and loc[0] == "dataset" and loc[1] in DATASETS else loc


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
    if data is None:
        raise ConfigError(
            f"{path} is empty: restore it (`git -C {path.parent} checkout params.yaml` in a workspace) "
            "or write the sections you need; alp init writes a complete one"
        )
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
