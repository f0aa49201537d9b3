"""Checkpoints that load without running pickled code, and the small inference file exported from them.

Two kinds of file carry a ``"worldsim"`` record (plain dicts, lists, strings and numbers only, so
``torch.load(path, weights_only=True)`` reads both):

- a **training checkpoint** (``<run>/<stage>/checkpoints/*.ckpt``), Lightning's own file: weights,
  optimizer and scheduler state, loop counters; ``"worldsim"`` is added by
  :class:`~worldsim.training.harness.WorldsimRecord` when it is saved.
- an **exported file** (``export_checkpoint``): the EMA weights of each trained part, configs and
  data meta, nothing for resuming; the shipped reference checkpoint is one of these.

The ``"worldsim"`` record::

    schema            CHECKPOINT_SCHEMA (int): bumped whenever the layout below changes
    worldsim_version  the package version that wrote it
    kind              "lightning" | "export"
    stage             "autoencoder" | "dynamics" | "idm"
    configs           {"autoencoder": {...AutoencoderConfig fields}, "dynamics": {...}, "optim": ...}
    data              {"env_id", "observation_space", "action_space", "dataset", "frame_shape", ...}
    parts             {part name: state_dict key prefix of its inference (EMA) weights}
    weights_sha256    exported files: ``weights_digest`` of their weights, checked on every load (a
                      file written before it was recorded loads unchecked)
    sampling          exported files only, optional: SamplingConfig fields the model samples with
                      unless its caller says otherwise (``set_default_sampling``)

This module is the inference side's only door to files: it imports no Lightning and no training
code, so ``WorldModel.from_checkpoint`` stays light.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Union

import torch

import worldsim
from worldsim.data.storage import read_manifest
from worldsim.models.autoencoder import AutoencoderConfig, FrameAutoencoder
from worldsim.sampling import DEFAULT_SAMPLING, SamplingConfig

if TYPE_CHECKING:
    from worldsim.models.dit import VideoDiT
    from worldsim.models.inverse_dynamics import InverseDynamicsModel
    from worldsim.models.text import TextEncoder

CHECKPOINT_SCHEMA = 1
EXPORT_KEY = "weights"  # exported files: {"worldsim": record, "weights": {part: state_dict}}


class CheckpointError(RuntimeError):
    pass


def plain(value: Any) -> Any:
    """A config (dataclass, tuple, Path, ...) as JSON-like builtins that weights_only can load."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"{value!r} of type {type(value).__name__} cannot be stored in a checkpoint "
        "record: use dataclasses, dicts, lists, strings and numbers"
    )


def dataset_meta(root: Union[str, Path]) -> dict[str, Any]:
    """What a checkpoint records about the data it was trained on, from the dataset manifest."""
    manifest = read_manifest(Path(root))
    return plain(
        {
            "dataset": str(Path(root).resolve()),
            "env_id": manifest.get("env_id", ""),
            "env_kwargs": manifest.get("env_kwargs", {}),
            "observation_space": manifest.get("observation_space"),
            "action_space": manifest.get("action_space"),
            "frame_shape": manifest.get("frame_shape"),
            "episodes": manifest.get("episodes"),
            "frames": manifest.get("frames"),
        }
    )


def worldsim_record(
    stage: str, configs: Mapping[str, Any], data: Mapping[str, Any], parts: Mapping[str, str], kind: str = "lightning"
) -> dict[str, Any]:
    return {
        "schema": CHECKPOINT_SCHEMA,
        "worldsim_version": worldsim.__version__,
        "kind": kind,
        "stage": stage,
        "configs": plain(configs),
        "data": plain(data),
        "parts": dict(parts),
    }


def load_weights_only(source: Union[str, Path, io.BytesIO], map_location: Union[str, torch.device] = "cpu") -> Any:
    """``torch.load(source, weights_only=True)``, or ValueError with a one-line reason it cannot be read."""
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except Exception as error:  # unpickling errors come in many types
        text = str(error)
        found = re.search(r"Unsupported global: (GLOBAL \S+)", text)
        if found:
            reason = f"it holds pickled objects ({found[1]}), not only weights"
        elif isinstance(error, (IndexError, KeyError, EOFError, RuntimeError)) or "pickl" in text.lower():
            reason = "it is no file torch.save wrote: truncated, corrupt, or another format"
        else:
            reason = f"{type(error).__name__}: {text.splitlines()[0][:200] if text else ''}"
        raise ValueError(f"it cannot be read with torch.load(weights_only=True): {reason}") from None


def missing_checkpoint(path: Union[str, Path]) -> Optional[str]:
    """Why ``path`` cannot be a checkpoint before it is read (it is missing, or a directory), or None."""
    path = Path(path)
    if path.is_dir():
        return (
            f"checkpoint {path} is a directory: pass a model file, e.g. {path / 'model.pt'}, or a run's "
            f"{path / 'dynamics' / 'checkpoints' / 'last.ckpt'}"
        )
    if not path.is_file():
        return (
            f"checkpoint {path} does not exist: pass the path of a .ckpt "
            "written by `worldsim train` or a file written by export_checkpoint"
        )
    return None


def load_checkpoint(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> dict[str, Any]:
    """A worldsim checkpoint (training or exported) read with ``weights_only=True``, its record checked."""
    path = Path(path)
    problem = missing_checkpoint(path)
    if problem:
        raise CheckpointError(problem)
    try:
        checkpoint = load_weights_only(path, map_location)
    except ValueError as error:
        raise CheckpointError(
            f"checkpoint {path}: {error}; worldsim never unpickles code, so pass a model file "
            "`worldsim train` or export_checkpoint wrote (re-train or re-export it with this worldsim)"
        ) from None
    record = checkpoint.get("worldsim") if isinstance(checkpoint, dict) else None
    if not isinstance(record, dict):
        raise CheckpointError(
            f"checkpoint {path} has no 'worldsim' record: it was not written by `worldsim train` or "
            "export_checkpoint; train one with `worldsim train`"
        )
    schema = record.get("schema")
    if schema != CHECKPOINT_SCHEMA:
        newer = isinstance(schema, int) and schema > CHECKPOINT_SCHEMA
        fix = (
            "upgrade worldsim to read it"
            if newer
            else "re-train it with this worldsim, or load it with the worldsim "
            f"{record.get('worldsim_version', '?')} that wrote it and re-export it"
        )
        raise CheckpointError(
            f"checkpoint {path} was written by schema {schema}; this worldsim reads schema {CHECKPOINT_SCHEMA}: {fix}"
        )
    recorded = record.get("weights_sha256")
    if record.get("kind") == "export" and recorded and weights_digest(checkpoint[EXPORT_KEY]) != recorded:
        raise CheckpointError(
            f"checkpoint {path}: its weights differ from the sha256 it records, so the file is corrupt (a "
            "changed byte, a bad copy): copy or export it again"
        )
    return checkpoint


def part_state_dict(checkpoint: Mapping[str, Any], part: str) -> dict[str, torch.Tensor]:
    """The inference weights of ``part`` from a loaded training or exported checkpoint."""
    record = checkpoint["worldsim"]
    if record.get("kind") == "export":
        weights = checkpoint[EXPORT_KEY]
        if part not in weights:
            raise CheckpointError(
                f"this exported checkpoint holds parts {sorted(weights)}, not "
                f"{part!r}: export one from a run that trained {part!r}"
            )
        return dict(weights[part])
    parts = record.get("parts", {})
    if part not in parts:
        raise CheckpointError(
            f"this checkpoint (stage {record.get('stage')!r}) holds parts "
            f"{sorted(parts)}, not {part!r}: use a checkpoint of the stage that "
            f"trains {part!r}"
        )
    prefix = parts[part]
    return {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}


EXPORT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def export_checkpoint(
    ckpt: Union[str, Path],
    out: Union[str, Path],
    extra_parts: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    extra_configs: Mapping[str, Any] | None = None,
    dtype: str = "float32",
) -> Path:
    """Write the small inference file of training checkpoint ``ckpt`` to ``out``.

    It holds each part's EMA weights, the configs and the data meta, and no optimizer state, so
    it is a fraction of the training checkpoint and loads with ``weights_only=True``.
    ``extra_parts``/``extra_configs`` add parts trained elsewhere (the dynamics stage adds the
    frozen autoencoder it was trained on, so one file serves inference). ``dtype`` stores the
    floating-point weights as float16/bfloat16 (half the bytes, e.g. to ship a checkpoint in a
    repository); loading casts them back to the networks' float32.
    """
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"export dtype {dtype!r} is not one of {sorted(EXPORT_DTYPES)}")
    store = EXPORT_DTYPES[dtype]
    checkpoint = load_checkpoint(ckpt)
    record = dict(checkpoint["worldsim"])
    weights = {
        part: {k: v.detach().clone().contiguous() for k, v in part_state_dict(checkpoint, part).items()}
        for part in record.get("parts", {})
    }
    weights.update({k: dict(v) for k, v in (extra_parts or {}).items()})
    weights = {
        part: {k: v.to(store) if v.is_floating_point() else v for k, v in tensors.items()}
        for part, tensors in weights.items()
    }
    record.update(
        kind="export",
        parts={part: "" for part in weights},
        weights_sha256=weights_digest(weights),
        configs={**record["configs"], **plain(dict(extra_configs or {}))},
        global_step=int(checkpoint.get("global_step", record.get("global_step", 0))),
        source=str(Path(ckpt).resolve()),
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    torch.save({"worldsim": record, EXPORT_KEY: weights}, tmp)
    os.replace(tmp, out)  # a killed export never leaves a half-written file under the real name
    return out


def weights_digest(weights: Mapping[str, Mapping[str, torch.Tensor]]) -> str:
    """sha256 of an exported file's weights: every tensor's name, dtype, shape and bytes, in sorted order."""
    digest = hashlib.sha256()
    for part in sorted(weights):
        for key in sorted(weights[part]):
            tensor = weights[part][key].detach().cpu().contiguous()
            digest.update(f"{part}.{key}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def autoencoder_config(record: Mapping[str, Any]) -> AutoencoderConfig:
    fields = dict(record["configs"]["autoencoder"])
    fields["channel_multipliers"] = tuple(fields["channel_multipliers"])
    return AutoencoderConfig(**fields)


def load_autoencoder(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> FrameAutoencoder:
    """The (EMA) ``FrameAutoencoder`` of a stage-1 training checkpoint or an exported file, in eval mode."""
    checkpoint = load_checkpoint(path, map_location)
    record = checkpoint["worldsim"]
    if "autoencoder" not in record.get("configs", {}):
        raise CheckpointError(
            f"checkpoint {path} (stage {record.get('stage')!r}) records no "
            "autoencoder config: pass a stage-1 checkpoint or an exported file"
        )
    model = FrameAutoencoder(autoencoder_config(record))
    model.load_state_dict(part_state_dict(checkpoint, "autoencoder"))
    return model.eval().requires_grad_(False).to(map_location)


def recorded_sampling(record: Mapping[str, Any]) -> SamplingConfig:
    """``DEFAULT_SAMPLING`` with the fields an exported file's ``sampling`` record sets."""
    fields = dict(record.get("sampling") or {})
    try:
        return SamplingConfig.of(fields).over(DEFAULT_SAMPLING)
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"the model file's default sampling {fields} is invalid ({error}): rewrite it with "
            "worldsim.checkpoint.set_default_sampling(path, ...)"
        ) from None


def set_default_sampling(path: Union[str, Path], **fields: Any) -> Path:
    """Record in exported model file ``path`` how it samples unless told otherwise.

    ``fields`` are ``SamplingConfig`` fields (e.g. ``steps=2, warm_start=0.0`` for a model that
    samples better from noise); they replace any recorded before, and none clears the record.
    Every consumer of the file (``WorldModel``, the envs, ``worldsim eval``, ``bench``, ``play``,
    ``imagine``) then uses them where its caller sets nothing. The file is rewritten in place,
    atomically.
    """
    SamplingConfig.of(fields)  # a misspelt or invalid field fails before the file is touched
    return set_record_fields(path, sampling=dict(fields))


def set_record_fields(path: Union[str, Path], **fields: Any) -> Path:
    """Set ``fields`` (plain values) in the record of exported file ``path``, rewritten in place, atomically.

    For what is known only once a file is exported: its default sampling, an IDM's measured accuracy.
    The weights and their sha256 stay as they are.
    """
    path = Path(path)
    checkpoint = load_checkpoint(path)
    if checkpoint["worldsim"].get("kind") != "export":
        raise CheckpointError(
            f"{path} is not an exported model file: set the record of the .pt file that `worldsim train` exports"
        )
    checkpoint["worldsim"] = {**checkpoint["worldsim"], **plain(fields)}
    tmp = path.with_name(f"{path.name}.tmp-record")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)
    return path


def load_inverse_dynamics(
    path: Union[str, Path], map_location: Union[str, torch.device] = "cpu"
) -> InverseDynamicsModel:
    """The (EMA) inverse-dynamics model of an idm-stage checkpoint or exported file, float32, in eval mode."""
    from worldsim.models.inverse_dynamics import InverseDynamicsConfig, InverseDynamicsModel  # it imports BlockWorld

    checkpoint = load_checkpoint(path, map_location)
    record = checkpoint["worldsim"]
    if record.get("stage") != "idm" or "idm" not in record.get("configs", {}):
        raise CheckpointError(
            f"checkpoint {path} (stage {record.get('stage')!r}) is no inverse-dynamics model: pass a file "
            "`worldsim train stage=idm` wrote, e.g. worldsim.reference_idm()"
        )
    try:
        model = InverseDynamicsModel(InverseDynamicsConfig(**record["configs"]["idm"]))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} records an invalid idm config ({error}): train it again") from None
    model.load_state_dict(part_state_dict(checkpoint, "idm"))  # float16 weights are cast to the model's float32
    return model.eval().requires_grad_(False).to(map_location)


def export_modules(
    path: Union[str, Path],
    dit: VideoDiT,
    text_encoder: TextEncoder,
    autoencoder: FrameAutoencoder,
    data: Mapping[str, Any],
    dynamics: Optional[Mapping[str, Any]] = None,
) -> Path:
    """Write networks (e.g. freshly built ones, for benchmarks and tests) as an exported model file.

    Goes through ``export_checkpoint`` from a minimal training-checkpoint layout, so the file is the
    one ``worldsim train`` writes. data: the meta a trained model records (``env_id``,
    ``env_kwargs``, ``action_space``, ``frame_shape``, ...).
    """
    configs = {"dit": dit.cfg, "text": text_encoder.config, "dynamics": dict(dynamics or {})}
    state = {
        **{f"dit.{k}": v for k, v in dit.state_dict().items()},
        **{f"text.{k}": v for k, v in text_encoder.state_dict().items()},
    }
    record = worldsim_record("dynamics", configs, data, parts={"dit": "dit.", "text": "text."})
    with tempfile.TemporaryDirectory(prefix="worldsim-export-") as tmp:
        ckpt = Path(tmp) / "modules.ckpt"
        torch.save({"worldsim": record, "state_dict": state, "global_step": 0}, ckpt)
        return export_checkpoint(
            ckpt,
            path,
            extra_parts={"autoencoder": autoencoder.state_dict()},
            extra_configs={"autoencoder": autoencoder.config},
        )
