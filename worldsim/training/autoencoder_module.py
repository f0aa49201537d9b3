"""Stage 1: train the frame autoencoder on single frames of an episode dataset.

``AutoencoderModule`` wires ``autoencoder_loss`` into Lightning with an EMA of the weights (used
for validation and export) and, once training finishes, sets the latent normalization from a
sample of training frames so the dynamics stage sees roughly unit-variance latents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info

from worldsim.config_checks import check_at_least, check_within
from worldsim.models.autoencoder import (
    AutoencoderConfig,
    FrameAutoencoder,
    autoencoder_loss,
    object_weight_map,
    psnr,
    uint8_to_unit,
    unit_to_uint8,
)
from worldsim.training.ema import EMA
from worldsim.training.guards import FiniteLossGuard
from worldsim.training.harness import TrainingModule, counted_step, log_parameter_count, step_generator
from worldsim.training.optim import OptimConfig, adamw_with_schedule


@dataclass
class AutoencoderStageConfig:
    batch_size: int = 64  # frames per batch on each device
    max_steps: Optional[int] = None  # steps of stage 1; None: trainer.max_steps
    num_workers: int = 0  # DataLoader worker processes
    val_fraction: float = 0.1  # share of episodes held out; their frames are the val set
    val_frames: int = 256  # held-out frames per validation, evenly spread over the val episodes
    statistics_frames: int = 1024  # training frames whose latents set the latent normalization
    image_frames: int = 8  # frames in the reconstruction grid logged at each validation
    # sha256-check every dataset file on setup (files unchanged since their last check are not hashed again); false
    # skips it: unsafe, a file changed in place would train silently
    verify: bool = True

    def __post_init__(self) -> None:
        check_at_least(
            self, "ae", batch_size=1, max_steps=1, num_workers=0, val_frames=1, statistics_frames=1, image_frames=0
        )
        check_within(self, "ae", val_fraction=(0, 0.99))


class AutoencoderModule(TrainingModule):
    """Steps, optimiser, EMA and logging around a plain ``FrameAutoencoder``.

    Batches are one-frame clips (``FrameDataModule``): uint8 frames (B, 1, 3, H, W). Validation and
    export use the EMA weights.
    """

    def __init__(
        self,
        config: AutoencoderConfig,
        optim: OptimConfig,
        max_steps: int,
        seed: int = 0,
        statistics_frames: int = 1024,
        image_frames: int = 8,
    ) -> None:
        super().__init__()
        self.config, self.optim, self.max_steps, self.seed = config, optim, max_steps, seed
        self.statistics_frames, self.image_frames = statistics_frames, image_frames
        self.autoencoder = FrameAutoencoder(config)
        self.ema = EMA(self.autoencoder, optim.ema_decay) if optim.ema_decay > 0 else None
        self.finite_guard = FiniteLossGuard()
        self._grid: Optional[torch.Tensor] = None
        self.flops_per_batch: Optional[int] = None  # set by the first training step (counted_step)

    @property
    def inference_model(self) -> FrameAutoencoder:
        return self.ema.model if self.ema is not None else self.autoencoder

    @property
    def export_parts(self) -> dict[str, str]:
        """state_dict prefix of the weights inference uses, per part (see checkpoint.py)."""
        return {"autoencoder": "ema.model." if self.ema is not None else "autoencoder."}

    def on_fit_start(self) -> None:
        log_parameter_count("autoencoder", self.autoencoder)

    def configure_optimizers(self) -> dict[str, Any]:
        return adamw_with_schedule(self.autoencoder, self.optim, self.max_steps, fused=self.fused_adamw)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        frames = batch["frames"][:, 0]  # (B, 3, H, W)
        generator = step_generator(self.seed, self.global_step, self.global_rank, self.device)
        loss, logs = counted_step(self, lambda: autoencoder_loss(self.autoencoder, uint8_to_unit(frames), generator))
        self.finite_guard.watch(loss, self.global_step, logs)
        self.log("train/loss", loss, prog_bar=True)
        # object_psnr is NaN on a batch without objects, and logged so: filtering it out would
        # make every step wait for the GPU.
        self.log_dict({f"train/{k}": v for k, v in logs.items() if k != "loss"})
        return loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.finite_guard.check()  # raises before the file is written if the last step went non-finite

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        # Right after the step, not in on_train_batch_end: checkpoint callbacks run before that
        # module hook, so a checkpoint would hold an EMA one update behind its weights.
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update(self.autoencoder)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        frames = batch["frames"][:, 0]  # (B, 3, H, W)
        x = uint8_to_unit(frames)
        recon, _ = self.inference_model(x)  # eval mode: decodes the posterior mean
        mask = object_weight_map(x, self.config)  # (B, 1, H, W)
        B = x.shape[0]
        self.log("val/psnr", psnr(recon, x), batch_size=B, sync_dist=True, prog_bar=True)
        if mask.sum() > 0:
            self.log("val/object_psnr", psnr(recon, x, mask), batch_size=B, sync_dist=True)
        if batch_idx == 0:
            k = min(self.image_frames, B)
            top = torch.cat(list(frames[:k]), dim=-1)  # (3, H, k*W)
            bottom = torch.cat(list(unit_to_uint8(recon[:k])), dim=-1)  # (3, H, k*W)
            self._grid = torch.cat([top, bottom], dim=-2).cpu()  # (3, 2H, k*W): truth over reconstruction

    def on_validation_epoch_end(self) -> None:
        if self._grid is None or not self.trainer.is_global_zero:
            return
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("val/reconstruction", self._grid, self.global_step)
        self._grid = None

    @torch.no_grad()
    def finish_training(self) -> None:
        """Set each model's latent normalization from its own latents of a sample of train frames."""
        frames = self.trainer.datamodule.statistics_frames(self.statistics_frames)
        models = [self.autoencoder] + ([self.ema.model] if self.ema is not None else [])
        for model in models:
            was_training = model.training
            model.eval()
            latents = torch.cat(
                [model.encode(uint8_to_unit(chunk.to(self.device))).mode() for chunk in frames.split(256)]
            )  # (N, C, h, w)
            model.set_latent_statistics(latents)
            model.train(was_training)
        rank_zero_info(
            f"latent statistics from {len(frames)} training frames: "
            f"mean |shift| {self.inference_model.latent_shift.abs().mean():.3f}, "
            f"mean scale {self.inference_model.latent_scale.mean():.3f}"
        )
