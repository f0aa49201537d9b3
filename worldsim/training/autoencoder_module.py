"""Stage 1: train the frame autoencoder on single frames of an episode dataset.

``AutoencoderModule`` wires ``autoencoder_loss`` into Lightning with an EMA of the weights (used
for validation and export) and, once training finishes, sets the latent normalization from a
sample of training frames so the dynamics stage sees roughly unit-variance latents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import lightning
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset

from worldsim.data.datamodule import split_episodes
from worldsim.data.dataset import EpisodeDataset
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
from worldsim.training.harness import (StepDataLoader, StepSampler, counted_step, log_parameter_count,
                                       step_generator)
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
    verify: bool = True  # check the dataset's sha256 sums when it is opened


class FrameDataset(Dataset):
    """Every frame of the given episodes (the final frame included) as uint8 (3, H, W)."""

    def __init__(self, episodes: EpisodeDataset, indices: np.ndarray) -> None:
        self.episodes = episodes
        self.indices = np.asarray(indices, dtype=np.int64)
        frames_per_episode = episodes.lengths[self.indices] + 1
        self.first_frame = np.concatenate([[0], np.cumsum(frames_per_episode)])

    def __len__(self) -> int:
        return int(self.first_frame[-1])

    def __getitem__(self, item: int) -> torch.Tensor:
        position = int(np.searchsorted(self.first_frame, item, side="right")) - 1
        episode, frame = int(self.indices[position]), int(item - self.first_frame[position])
        pixels = self.episodes.clip(episode, frame, 1, names=["frames"])["frames"][0]  # (H, W, 3)
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))  # (3, H, W)


class FrameDataModule(lightning.LightningDataModule):
    """Train frames drawn per global step (exactly resumable); fixed, evenly spread val frames."""

    def __init__(self, root: str, cfg: AutoencoderStageConfig, seed: int, split_seed: int = 0) -> None:
        super().__init__()
        self.root, self.cfg, self.seed, self.split_seed = root, cfg, seed, split_seed
        self.train_set: Optional[FrameDataset] = None
        self.val_set: Optional[FrameDataset] = None

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_set is not None:
            return
        episodes = EpisodeDataset(self.root, verify=self.cfg.verify)
        train, val = split_episodes(len(episodes), self.cfg.val_fraction, self.split_seed)
        if len(train) == 0:
            raise ValueError(f"{self.root} has {len(episodes)} episodes: too few to train on; collect more")
        self.train_set = FrameDataset(episodes, train)
        # Without held-out episodes, validate on training frames rather than not at all.
        self.val_set = FrameDataset(episodes, val if len(val) else train)

    def _global_step(self) -> int:
        return self.trainer.global_step if self.trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        rank = self.trainer.global_rank if self.trainer is not None else 0
        sampler = StepSampler(len(self.train_set), self.cfg.batch_size, self.seed, self._global_step, rank)
        return StepDataLoader(self.train_set, batch_size=self.cfg.batch_size, sampler=sampler,
                              num_workers=self.cfg.num_workers,
                              persistent_workers=self.cfg.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None, "call setup() first"
        count = min(self.cfg.val_frames, len(self.val_set))
        items = np.linspace(0, len(self.val_set) - 1, count).round().astype(int).tolist()
        return DataLoader(self.val_set, batch_size=self.cfg.batch_size, sampler=items,
                          num_workers=self.cfg.num_workers)

    def statistics_frames(self, count: int) -> torch.Tensor:
        """``count`` training frames (uint8 (count, 3, H, W)), the same ones for a given seed."""
        assert self.train_set is not None, "call setup() first"
        rng = np.random.default_rng([self.seed, 1])
        picks = rng.choice(len(self.train_set), size=min(count, len(self.train_set)), replace=False)
        return torch.stack([self.train_set[int(i)] for i in np.sort(picks)])


class AutoencoderModule(lightning.LightningModule):
    """Steps, optimiser, EMA and logging around a plain ``FrameAutoencoder``.

    Batches are uint8 frames (B, 3, H, W). Validation and export use the EMA weights.
    """

    def __init__(self, config: AutoencoderConfig, optim: OptimConfig, max_steps: int, seed: int = 0,
                 statistics_frames: int = 1024, image_frames: int = 8) -> None:
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
        return adamw_with_schedule(self.autoencoder, self.optim, self.max_steps)

    def training_step(self, frames: torch.Tensor, batch_idx: int) -> torch.Tensor:
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

    def validation_step(self, frames: torch.Tensor, batch_idx: int) -> None:
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
            latents = torch.cat([model.encode(uint8_to_unit(chunk.to(self.device))).mode()
                                 for chunk in frames.split(256)])  # (N, C, h, w)
            model.set_latent_statistics(latents)
            model.train(was_training)
        rank_zero_info(f"latent statistics from {len(frames)} training frames: "
                       f"mean |shift| {self.inference_model.latent_shift.abs().mean():.3f}, "
                       f"mean scale {self.inference_model.latent_scale.mean():.3f}")
