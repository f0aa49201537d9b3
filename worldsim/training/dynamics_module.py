"""Stage 2: the latent dynamics model (VideoDiT + text encoder, trained jointly) as a LightningModule.

The module only wires the plain pieces together: ``FlowMatching.loss`` for the training step,
``EMA`` of both networks updated every step, validation with the EMA weights (flow loss on val
clips; rollouts of a few fixed val clips scored beside the copy-last baseline), and the
checkpoint's ``worldsim`` record.

Alignment. Datasets store ``actions[t]`` taken *at* frame t (leading to t + 1) and ``rewards[t]``,
``terminated[t]`` of that transition. The DiT conditions frame t on the action that *led to* it and
its heads predict the transition that produced it, so everything shifts right by one
(``align_transitions``): frame 0 gets the null action, an unknown reward (NaN, masked out of the
loss) and "not terminated", which is exact because a clip's first frame is never an episode's last.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from worldsim.checkpoint import part_state_dict
from worldsim.config_checks import check_at_least
from worldsim.flow import FlowMatching, FlowMatchingConfig, rollout
from worldsim.models.actions import action_fields, model_actions
from worldsim.models.autoencoder import FrameAutoencoder
from worldsim.models.dit import VideoDiT, VideoDiTConfig
from worldsim.models.text import TEXT_ENCODER_PRESETS, TextEncoder, TextEncoderConfig
from worldsim.sampling import DEFAULT_SAMPLING, SamplingConfig
from worldsim.training import rollout_metrics
from worldsim.training.ema import EMA
from worldsim.training.guards import FiniteLossGuard
from worldsim.training.harness import TrainingModule, counted_step, step_generator
from worldsim.training.optim import OptimConfig, adamw_with_schedule

#: VideoDiTConfig fields that follow from the data and clip_length, never from overrides.
DATA_FIELDS = ("latent_channels", "latent_size", "action_kind", "action_dim", "num_actions", "max_frames")
TRAINABLE = ("all", "heads")  # what a dynamics run trains: every weight, or only the reward and termination heads


@dataclass
class MemoryConfig:
    """World memory (``worldsim.models.memory``): what a frame sees past its attention window.

    Both fields leave the network's weights as they are, so a fine-tune (``init=``) may set them and
    the ablation (``slots=0``) trains the same network on the same clips at the same compute.
    """

    slots: Optional[int] = None  # frames kept after they leave the window; 0: off; None: init's, else 0
    window: Optional[int] = None  # past frames attended directly; None: init's, else clip_length - 1
    # the most frames back a remembered frame reads as; None: init's, else 0 (clip_length - 1);
    # window + 1 reads the bank at offsets the window trained
    offset: Optional[int] = None

    def __post_init__(self) -> None:
        check_at_least(self, "dynamics.memory", slots=0, window=1, offset=0)

    def fields(self) -> dict[str, int]:
        """The VideoDiTConfig fields this sets."""
        named = {"memory_slots": self.slots, "attention_window": self.window, "memory_offset": self.offset}
        return {key: int(value) for key, value in named.items() if value is not None}


@dataclass
class DynamicsConfig:
    # DIT_PRESETS / TEXT_ENCODER_PRESETS name: tiny (CPU) | mid (Physics, Push references) | small | base
    preset: str = "tiny"
    # all | heads: only the reward and termination heads learn (fine-tuning with init=; frames stay init's)
    trainable: str = "all"
    # overrides of the preset's VideoDiTConfig: on the command line +dynamics.dit={width:64,depth:2}
    dit: dict[str, Any] = field(default_factory=dict)
    # overrides of the preset's TextEncoderConfig (+dynamics.text={depth:2}); width follows dit text_width
    text: dict[str, Any] = field(default_factory=dict)
    # objective: noise levels, context noise, condition dropout
    flow: FlowMatchingConfig = field(default_factory=FlowMatchingConfig)
    clip_length: int = 16  # frames per training clip; also the DiT's max_frames (window = clip_length - 1)
    # world memory: dynamics.memory.slots=8 dynamics.memory.window=7 with clip_length=32 (docs/memory.md)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    context_frames: int = 4  # real frames a validation rollout starts from
    # reported rollout horizons (those the rollout clips hold)
    horizons: list[int] = field(default_factory=lambda: [1, 4, 16])
    grid_clips: int = 2  # rollout clips drawn in the TensorBoard image grid (context | truth | prediction)
    val_seed: int = 0  # seeds validation noise, so val metrics of different epochs compare

    def __post_init__(self) -> None:
        if self.trainable not in TRAINABLE:
            raise ValueError(f"trainable={self.trainable!r} is not one of {TRAINABLE}")
        if self.clip_length < 2:
            raise ValueError(f"clip_length={self.clip_length}: dynamics needs clips of at least 2 frames")
        if self.context_frames < 1:
            raise ValueError(f"context_frames={self.context_frames}: a rollout starts from at least 1 real frame")
        check_at_least(self, "dynamics", horizons=1, grid_clips=0, val_seed=0)
        fixed = sorted(set(self.dit) & set(DATA_FIELDS))
        if fixed:
            raise ValueError(
                f"dit overrides {fixed} are set from the data (latent cache, action space) and "
                "clip_length: remove them from dit"
            )
        if isinstance(self.flow, dict):  # built from a checkpoint's plain dict
            self.flow = FlowMatchingConfig(**self.flow)
        if isinstance(self.memory, dict):
            self.memory = MemoryConfig(**self.memory)
        memory_fields = sorted(set(self.dit) & {"memory_slots", "attention_window", "memory_offset"})
        if memory_fields:
            raise ValueError(f"dit overrides {memory_fields} are set by dynamics.memory.slots, .window and .offset")


def align_transitions(actions: Optional[torch.Tensor], rewards: torch.Tensor, terminated: torch.Tensor):
    """Per-frame inputs of the transition *into* each frame from dataset rows of the one taken *at* it.

    actions (B, T, ...) or None, rewards (B, T), terminated (B, T) ->
    actions shifted right by one (zeros at frame 0), action_mask (B, T) False at frame 0,
    rewards (B, T) float with NaN (unknown) at frame 0, terminated (B, T) bool False at frame 0.
    The last row of the inputs (the transition out of the clip) is dropped.
    """
    B, T = rewards.shape
    action_mask = None
    if actions is not None:
        actions = torch.cat([torch.zeros_like(actions[:, :1]), actions[:, :-1]], dim=1)
        action_mask = (torch.arange(T, device=rewards.device) > 0).expand(B, T)  # (B, T)
    rewards = torch.cat(
        [torch.full_like(rewards[:, :1], math.nan, dtype=torch.float32), rewards[:, :-1].float()], dim=1
    )
    terminated = torch.cat([torch.zeros_like(terminated[:, :1], dtype=torch.bool), terminated[:, :-1].bool()], dim=1)
    return actions, action_mask, rewards, terminated


def build_networks(cfg: DynamicsConfig, meta: dict[str, Any]) -> tuple[VideoDiTConfig, TextEncoderConfig]:
    """The DiT and text encoder configs: preset, then overrides, then the data's facts."""
    for key in ("latent_channels", "latent_size"):
        if key not in meta:
            raise ValueError(
                f"meta lacks {key!r} (has {sorted(meta)}): build it with LatentClipDataModule.meta "
                "or LatentCache(path).meta()"
            )
    dit = VideoDiTConfig.preset(
        cfg.preset,
        **cfg.dit,
        latent_channels=int(meta["latent_channels"]),
        latent_size=int(meta["latent_size"]),
        max_frames=cfg.clip_length,
        **action_fields(meta.get("action_space")),
        **cfg.memory.fields(),
    )
    text_preset = dataclasses.asdict(TEXT_ENCODER_PRESETS[cfg.preset])
    text = TextEncoderConfig(**{**text_preset, "width": dit.text_width, **cfg.text})
    if text.width != dit.text_width:
        raise ValueError(
            f"text width {text.width} differs from the DiT's text_width {dit.text_width}: set them "
            "together (dit.text_width and text.width) or leave text.width out"
        )
    return dit, text


def networks_of(
    init: Mapping[str, Any], meta: dict[str, Any], clip_length: int, memory: Optional[MemoryConfig] = None
) -> tuple[VideoDiTConfig, TextEncoderConfig]:
    """The DiT and text encoder configs of exported model ``init``, checked against the data to fine-tune on.

    ``memory`` may give the network a memory (or take it away): that changes no weight. With memory
    set, ``clip_length`` may differ from init's clips; the window stays init's unless memory sets it.
    """
    configs = init["worldsim"]["configs"]
    dit, text = VideoDiTConfig(**configs["dit"]), TextEncoderConfig(**configs["text"])
    data = {
        "latent_channels": int(meta["latent_channels"]),
        "latent_size": int(meta["latent_size"]),
        **action_fields(meta.get("action_space")),
    }
    differ = {key: (getattr(dit, key), value) for key, value in data.items() if getattr(dit, key) != value}
    if differ:
        raise ValueError(
            f"the init model does not fit this data: {', '.join(f'{k} {a} (model) vs {b} (data)' for k, (a, b) in differ.items())}; "
            "fine-tune on data of the same world, encoded by the init model's autoencoder"
        )
    memory_fields = memory.fields() if memory is not None else {}
    if memory_fields:
        memory_fields.setdefault("attention_window", dit.window)
        try:
            return dataclasses.replace(dit, max_frames=clip_length, **memory_fields), text
        except ValueError as error:
            raise ValueError(f"dynamics.memory on the init model: {error}") from None
    if clip_length != dit.max_frames:
        raise ValueError(
            f"dynamics.clip_length={clip_length} but the init model's DiT takes {dit.max_frames}-frame clips: "
            f"set dynamics.clip_length={dit.max_frames}"
        )
    return dit, text


def _plain(value: Any) -> Any:
    """JSON values only (dicts, lists, str, numbers, bool, None), as torch.load(weights_only=True) needs."""
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    return json.loads(json.dumps(value))


class DynamicsModule(TrainingModule):
    """Trains ``networks`` = {dit: VideoDiT, text: TextEncoder} with flow matching on latent clips.

    meta: data facts, JSON values: ``latent_channels``, ``latent_size``, ``action_space`` (the
    dataset manifest's description), ``env_id`` (see ``LatentCache.meta``). The autoencoder, given
    to the constructor or ``set_autoencoder``, only decodes validation rollouts to pixels: it is
    frozen and is not part of this module's state_dict or checkpoints.
    """

    def __init__(
        self,
        cfg: DynamicsConfig,
        optim: OptimConfig,
        max_steps: int,
        meta: dict[str, Any],
        autoencoder: Optional[FrameAutoencoder] = None,
        seed: int = 0,
        init: Optional[Mapping[str, Any]] = None,
        configs: Optional[tuple[VideoDiTConfig, TextEncoderConfig]] = None,
        sampling: SamplingConfig = DEFAULT_SAMPLING,
    ) -> None:
        super().__init__()
        self.cfg, self.optim, self.max_steps, self.meta = cfg, optim, max_steps, _plain(meta)
        self.sampling = SamplingConfig.of(sampling).over(DEFAULT_SAMPLING)  # how validation rollouts sample
        self.seed = seed
        if init is not None:
            configs = networks_of(init, self.meta, cfg.clip_length, cfg.memory)
        self.dit_config, self.text_config = configs or build_networks(cfg, self.meta)
        self.networks = nn.ModuleDict({"dit": VideoDiT(self.dit_config), "text": TextEncoder(self.text_config)})
        self.from_init = init is not None
        if init is not None:
            for name, network in self.networks.items():
                network.load_state_dict(part_state_dict(init, name))
        if cfg.trainable == "heads":
            self.networks.requires_grad_(False)
            self.networks["dit"].heads.requires_grad_(True)
        self.ema = EMA(self.networks, optim.ema_decay) if optim.ema_decay > 0 else None  # starts at init's weights
        self.flow = FlowMatching(cfg.flow)
        self.flops_per_batch: Optional[int] = None  # set by the first training step (counted_step)
        self.finite_guard = FiniteLossGuard()
        self._autoencoder: Optional[FrameAutoencoder] = None
        if autoencoder is not None:
            self.set_autoencoder(autoencoder)

    def set_autoencoder(self, autoencoder: FrameAutoencoder) -> None:
        """Decode validation rollouts with ``autoencoder`` (frozen; kept out of the state_dict)."""
        latent = (autoencoder.config.latent_channels, self.dit_config.latent_channels)
        if latent[0] != latent[1]:
            raise ValueError(
                f"the autoencoder has {latent[0]} latent channels but the dynamics model "
                f"{latent[1]}: pass the autoencoder whose latents were cached"
            )
        autoencoder.eval().requires_grad_(False)
        object.__setattr__(self, "_autoencoder", autoencoder)  # not a submodule: never saved

    # -- training ----------------------------------------------------------------------------------

    def _inputs(self, batch: dict[str, Any], text_encoder: TextEncoder):
        actions = model_actions(batch["actions"], self.meta.get("action_space"))
        actions, action_mask, rewards, terminated = align_transitions(actions, batch["rewards"], batch["terminated"])
        text = text_encoder.encode_text(list(batch["caption"]), self.device)
        return batch["latents"], actions, action_mask, text, rewards, terminated

    def on_fit_start(self) -> None:
        dit = sum(p.numel() for p in self.networks["dit"].parameters())
        text = sum(p.numel() for p in self.networks["text"].parameters())
        trained = sum(p.numel() for p in self.networks.parameters() if p.requires_grad)
        origin = "the init model's networks" if self.from_init else f"{self.cfg.preset} preset"
        rank_zero_info(
            f"dynamics model: VideoDiT {dit / 1e6:.2f}M + text encoder {text / 1e6:.2f}M parameters "
            f"({origin}, {self.cfg.clip_length}-frame clips), {trained / 1e6:.2f}M of them trained"
        )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        latents = batch["latents"]
        # Noise levels, noise and condition dropout of a step follow from (seed, step, rank), so a
        # resumed run repeats the interrupted one exactly.
        generator = step_generator(self.seed, self.global_step, self.global_rank, self.device)
        loss, logs = counted_step(
            self,
            lambda: self.flow.loss(
                self.networks["dit"],
                *self._inputs(batch, self.networks["text"]),
                generator=generator,
                from_start=batch["start"] == 0,
            ),
        )
        self.finite_guard.watch(loss, self.global_step, logs)
        B = latents.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=B)
        for name, value in logs.items():
            if name != "loss":
                self.log(f"train/{name}", value, batch_size=B)
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        # Right after the step, not in on_train_batch_end: checkpoint callbacks run before that
        # module hook, so a checkpoint would hold an EMA one update behind its weights.
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update(self.networks)

    def configure_optimizers(self) -> dict[str, Any]:
        return adamw_with_schedule(self.networks, self.optim, self.max_steps, fused=self.fused_adamw)

    # -- validation ----------------------------------------------------------------------------------

    @property
    def eval_networks(self) -> nn.ModuleDict:
        """The weights validation and export use: the EMA average when EMA is on."""
        return self.ema.model if self.ema is not None else self.networks

    def _generator(self, offset: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.cfg.val_seed + offset)

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        if dataloader_idx == 0:
            self._validate_loss(batch, batch_idx)
        else:
            self._validate_rollout(batch, batch_idx)

    def _validate_loss(self, batch: dict[str, Any], batch_idx: int) -> None:
        networks = self.eval_networks
        _, logs = self.flow.loss(
            networks["dit"],
            *self._inputs(batch, networks["text"]),
            generator=self._generator(batch_idx),
            self_rollout=False,
            from_start=batch["start"] == 0,
        )  # comparable across runs
        for name, value in logs.items():
            self.log(
                f"val/{name}", value, batch_size=batch["latents"].shape[0], add_dataloader_idx=False, sync_dist=True
            )

    def _validate_rollout(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Roll out from the first context_frames of each clip with its true actions; score every horizon."""
        latents = batch["latents"]  # (B, T, C, h, w)
        B, T = latents.shape[:2]
        K = min(self.cfg.context_frames, T - 1)
        horizon = T - K
        networks, s = self.eval_networks, self.sampling
        actions = model_actions(batch["actions"], self.meta.get("action_space"))
        text = networks["text"].encode_text(list(batch["caption"]), self.device)
        predicted = rollout(
            networks["dit"],
            latents[:, :K],
            None if actions is None else actions[:, : T - 1],
            text,
            horizon,
            steps=s.steps,
            sampler=s.sampler,
            cfg_text=s.cfg_text,
            cfg_action=s.cfg_action,
            context_noise=self.cfg.flow.context_noise,
            window=s.window,
            generator=self._generator(1_000_003 + batch_idx),
            warm_start=s.warm_start,
            first_steps=s.first_steps,
            generated_noise=s.generated_noise,
        ).latents  # (B, horizon, C, h, w)
        truth = latents[:, K:]
        metrics = {
            **rollout_metrics.at_horizons(
                rollout_metrics.mse_per_frame(predicted, truth), self.cfg.horizons, "latent_mse"
            ),
            **rollout_metrics.at_horizons(
                rollout_metrics.mse_per_frame(rollout_metrics.copy_last(latents[:, :K], horizon), truth),
                self.cfg.horizons,
                "copy_last_latent_mse",
            ),
        }
        if self._autoencoder is not None:
            autoencoder = self._autoencoder.to(self.device)
            frames = batch["frames"] if "frames" in batch else autoencoder.decode_latents(latents)  # (B, T, 3, H, W)
            decoded = autoencoder.decode_latents(predicted)  # (B, horizon, 3, H, W) uint8
            copied = rollout_metrics.copy_last(frames[:, :K], horizon)
            metrics.update(
                rollout_metrics.at_horizons(
                    rollout_metrics.psnr_per_frame(decoded, frames[:, K:]), self.cfg.horizons, "psnr"
                )
            )
            metrics.update(
                rollout_metrics.at_horizons(
                    rollout_metrics.psnr_per_frame(copied, frames[:, K:]), self.cfg.horizons, "copy_last_psnr"
                )
            )
            if batch_idx == 0 and self.cfg.grid_clips > 0:
                n = self.cfg.grid_clips
                self._log_grid(rollout_metrics.comparison_grid(frames[:n, :K], frames[:n, K:], decoded[:n]))
        for name, value in metrics.items():
            self.log(f"val/{name}", value, batch_size=B, add_dataloader_idx=False, sync_dist=True)

    def _log_grid(self, grid: torch.Tensor) -> None:
        if not self.trainer.is_global_zero:
            return
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("val/rollout", grid, self.global_step, dataformats="CHW")

    # -- checkpoints ---------------------------------------------------------------------------------

    def record(self) -> dict[str, Any]:
        """What a checkpoint needs to rebuild this module: plain dicts only."""
        return {
            "config": _plain(self.cfg),
            "optim": _plain(self.optim),
            "max_steps": int(self.max_steps),
            "meta": self.meta,
            "dit": _plain(self.dit_config),
            "text": _plain(self.text_config),
            "sampling": _plain(self.sampling),
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.finite_guard.check()  # raises before the file is written if the last step went non-finite
        checkpoint.setdefault("worldsim", {})["dynamics"] = self.record()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stored = checkpoint.get("worldsim", {}).get("dynamics")
        if stored is None:
            return
        for name, current in (("dit", _plain(self.dit_config)), ("text", _plain(self.text_config))):
            # Fields newer than the checkpoint (memory_slots, attention_window) count as their defaults.
            defaults = _plain(VideoDiTConfig(**stored[name]) if name == "dit" else TextEncoderConfig(**stored[name]))
            changed = {k: (defaults.get(k), v) for k, v in current.items() if defaults.get(k) != v}
            if changed:
                raise ValueError(
                    f"the checkpoint's {name} config differs from this run's in {changed} (checkpoint, now): "
                    "resume with the same model config and data, or start a new run"
                )

    @classmethod
    def from_checkpoint(cls, path: str, map_location: str = "cpu") -> "DynamicsModule":
        """Rebuild the module from a Lightning checkpoint without running pickled code."""
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
        try:
            record = checkpoint["worldsim"]["dynamics"]
        except KeyError:
            raise ValueError(
                f"{path} holds no worldsim dynamics record: it is not a dynamics checkpoint "
                "(an autoencoder checkpoint, or one written by another program)"
            ) from None
        configs = (VideoDiTConfig(**record["dit"]), TextEncoderConfig(**record["text"])) if "dit" in record else None
        known = {
            field.name for field in dataclasses.fields(DynamicsConfig)
        }  # older records held validation sampling here
        module = cls(
            DynamicsConfig(**{k: v for k, v in record["config"].items() if k in known}),
            OptimConfig(**record["optim"]),
            record["max_steps"],
            record["meta"],
            configs=configs,
            sampling=SamplingConfig.of(record.get("sampling")),
        )  # the networks it trained, preset or init's
        module.load_state_dict(checkpoint["state_dict"])
        return module
