"""Training one model on one image."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import torch

from ..config import DiffusionConfig, TrainConfig
from ..diffusion.gaussian import GaussianDiffusion
from ..diffusion.schedule import step_of_fraction
from ..models.kinds import get_kind
from ..progress import make_progress
from ..runtime import Preempted, StopSignals, autocast, autocast_dtype, describe, resolve_device
from .augment import random_crops, random_rescale
from .ema import EMA, auto_decay
from .lr import lr_factor


class Trainer:
    """Denoising training on batches made from one image, of any trainable model kind.

    Args:
        image: ``[3, H, W]`` in [-1, 1], H and W multiples of the kind's size multiple.
        model: the ``model`` section (a model kind's options, :mod:`sindiffusion.models.kinds`);
            ``diffusion``/``train``: the params.yaml sections.
        image_info: recorded in checkpoints (name, sha256, size, path).

    Everything the trainer knows about the network comes from the kind: the module it optimises
    (``kind.build``), the checkpoint's ``config.model`` (``kind.stored_config``), the size multiple
    the random rescale keeps (``kind.geometry``) and whether ``channels_last: auto`` applies.

    All randomness (augmentation, timesteps, noise) comes from one CPU ``torch.Generator``
    seeded with ``train.seed``, whose state is checkpointed: resuming reproduces a straight run.
    """

    def __init__(
        self,
        image: torch.Tensor,
        model: Any,
        diffusion: DiffusionConfig,
        train: TrainConfig,
        image_info: dict[str, Any],
        device: torch.device | None = None,
    ) -> None:
        self.kind = get_kind(model.kind)
        if not self.kind.trainable:
            raise ValueError(f"model.kind: {self.kind.name!r} is training-free; there is nothing to train")
        self.train_cfg = train
        self.model_cfg = model
        self.diffusion_cfg = diffusion
        self.image_info = image_info
        self.size_multiple = self.kind.geometry(model).size_multiple
        """The random rescale keeps both sides multiples of this (the kind's geometry)."""
        self.device = device or resolve_device(train.device)
        self.diffusion = GaussianDiffusion.from_config(
            diffusion.schedule,
            diffusion.timesteps,
            diffusion.beta_start,
            diffusion.beta_end,
            diffusion.variance,
            diffusion.parameterization,
        )
        torch.manual_seed(train.seed)
        self.generator = torch.Generator().manual_seed(train.seed)
        self.model = self.kind.build(model, self.diffusion, image).to(self.device)
        self.ema_decay = (
            auto_decay(train.steps, train.ema_half_life) if train.ema_decay == "auto" else float(train.ema_decay)
        )
        self.ema = EMA(self.model, self.ema_decay, train.ema_warmup)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
        self.image = image.unsqueeze(0).float()  # [1, 3, H, W] on CPU; augmentation runs on CPU
        self.step = 0
        self.seconds = 0.0
        """Training wall-clock seconds so far, over every run of a resumed training (checkpointed)."""
        cuda = self.device.type == "cuda"
        self.autocast_dtype = autocast_dtype(train.precision, self.device)
        self.precision_note = describe(train.precision, self.device)
        auto = cuda and self.kind.channels_last(model)
        self.channels_last = {"auto": auto, "on": True, "off": False}[train.channels_last]
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # the compiled wrapper only runs the forward pass; weights, EMA and checkpoints use self.model
        self.net = torch.compile(self.model) if train.compile else self.model

    # ------------------------------------------------------------------ state
    def config_dict(self) -> dict[str, Any]:
        return {
            "model": self.kind.stored_config(self.model_cfg),
            "diffusion": dataclasses.asdict(self.diffusion_cfg),
            "train": dataclasses.asdict(self.train_cfg),
        }

    def state_dict(self) -> dict[str, Any]:
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "train_generator": self.generator.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "step": self.step,
            "train_seconds": self.seconds,
            "config": self.config_dict(),
            "image": self.image_info,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": rng,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.seconds = float(state.get("train_seconds", 0.0))  # absent in checkpoints before wall-clock budgets
        torch.set_rng_state(state["rng"]["torch"])
        self.generator.set_state(state["rng"]["train_generator"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    # ------------------------------------------------------------------ steps
    def make_batch(self) -> torch.Tensor:
        """``[B, 3, H', W']`` in [-1, 1]: the image, rescaled (and cropped) as configured."""
        cfg = self.train_cfg
        # one pair of scale factors per step for the whole batch (official): resize the image once, then
        # repeat it -- the same numbers as resizing B copies, B times less CPU work (on an H200 the paper
        # config trained at 6.9 it/s with the per-copy resize vs 11.4 it/s in benchmark-speed without it)
        image = random_rescale(self.image, cfg.scale_min, cfg.scale_max, self.size_multiple, self.generator)
        batch = image.expand(cfg.batch_size, -1, -1, -1)
        if cfg.crop_size:
            batch = random_crops(batch, cfg.crop_size, self.generator)
        return batch.contiguous()

    def draw_timesteps(self, b: int) -> torch.Tensor:
        """``[b]`` int64 timesteps of one batch, uniform over [0, t_max * (T-1)] (``train.t_max``; 1 =
        every level, the same draws as before the option existed)."""
        top = step_of_fraction(self.train_cfg.t_max, self.diffusion.num_timesteps)
        return torch.randint(0, top + 1, (b,), generator=self.generator)

    def train_step(self) -> float:
        """One optimisation step; returns the loss."""
        x0 = self.make_batch()
        b = x0.shape[0]
        t = self.draw_timesteps(b)
        noise = torch.randn(x0.shape, generator=self.generator)
        x0, t, noise = (v.to(self.device, non_blocking=True) for v in (x0, t, noise))
        if self.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
            noise = noise.contiguous(memory_format=torch.channels_last)
        self.model.train()
        cfg = self.train_cfg

        def net(x_t: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
            # only the network runs under autocast; training_loss computes the error in fp32
            with autocast(self.device, self.autocast_dtype):
                return self.net(x_t, tt)

        loss = self.diffusion.training_loss(net, x0, t, noise, cfg.loss_weighting, cfg.min_snr_gamma)
        lr = cfg.lr * lr_factor(self.step, cfg.steps, cfg.lr_warmup, cfg.lr_schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.train_cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.train_cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        self.ema.update(self.model, self.step)
        return float(loss.detach())

    def run(
        self,
        until: int,
        on_log: Callable[[int, float, float], None] | None = None,
        on_save: Callable[["Trainer"], None] | None = None,
        progress: bool = True,
        on_snapshot: Callable[["Trainer", float], None] | None = None,
    ) -> dict[str, float]:
        """Train until ``self.step == until`` or the wall-clock budget ``train.max_minutes`` is spent.

        ``on_log(step, mean_loss, it_per_s)`` every ``train.log_every`` steps (and at the end);
        ``on_save(trainer)`` every ``train.save_every`` steps; ``on_snapshot(trainer, minutes)`` once
        for each mark of ``train.snapshot_minutes`` the training clock passes (:attr:`seconds`,
        which counts every run of a resumed training and not the time spent in ``on_snapshot``).
        Progress: a tqdm bar, or with ``progress=False`` a plain line every ~5 % on stderr.
        Returns summary metrics (``stopped_by``: 1.0 = the time budget, 0.0 = the step count).

        On SIGTERM/SIGUSR1/SIGINT (:class:`~sindiffusion.runtime.StopSignals`) the current step
        is finished, the losses since the last log are logged (at the current step), ``on_save``
        writes the resume state and :class:`~sindiffusion.runtime.Preempted` is raised: a resumed
        run loses no step.
        """
        cfg = self.train_cfg
        bar = make_progress("train", until, progress, initial=self.step)
        marks = [m for m in sorted(cfg.snapshot_minutes) if m * 60.0 > self.seconds] if on_snapshot else []
        budget = cfg.max_minutes * 60.0 if cfg.max_minutes else float("inf")
        window: list[float] = []
        t0 = time.perf_counter()
        t_window, start_step, base, paused = t0, self.step, self.seconds, 0.0
        last_loss = float("nan")
        done = False

        def flush() -> None:
            nonlocal window, t_window
            now = time.perf_counter()
            its = len(window) / max(now - t_window, 1e-9)
            mean = sum(window) / len(window)
            bar.set_postfix(loss=f"{mean:.4f}", refresh=False)
            if on_log:
                on_log(self.step, mean, its)
            window, t_window = [], now

        with StopSignals() as stop:
            while self.step < until and self.seconds < budget and not stop.requested:
                loss = self.train_step()
                if loss != loss:  # NaN
                    raise FloatingPointError(f"training loss became NaN at step {self.step}; lower train.lr")
                window.append(loss)
                last_loss = loss
                bar.update(1)
                self.seconds = base + time.perf_counter() - t0 - paused
                done = self.step == until or self.seconds >= budget
                if self.step % cfg.log_every == 0 or done:
                    flush()
                while marks and self.seconds >= marks[0] * 60.0:
                    t_snap = time.perf_counter()
                    on_snapshot(self, marks.pop(0))  # type: ignore[misc]
                    paused += time.perf_counter() - t_snap  # saving is measurement, not training time
                if on_save and (self.step % cfg.save_every == 0) and not done:
                    on_save(self)
            bar.close()
            if stop.requested and not done:
                if window:
                    flush()
                if on_save:
                    on_save(self)
                raise Preempted(stop.signum or 0, self.step)
        elapsed = time.perf_counter() - t0
        steps_done = self.step - start_step
        return {
            "final_loss": last_loss,
            "steps": float(self.step),
            "it_per_s": steps_done / elapsed if elapsed > 0 and steps_done else 0.0,
            "seconds": elapsed,
            "train_seconds_total": self.seconds,
            "stopped_by_time": float(self.step < until),
        }

    def snapshot_state(self, minutes: float) -> dict[str, Any]:
        """A sampling-only checkpoint of the EMA weights (no optimiser, no RNG), loadable by
        ``sindiffusion sample --checkpoint``; ``snapshot`` records the mark, steps and seconds."""
        ema = self.ema.state_dict()
        return {
            "step": self.step,
            "config": self.config_dict(),
            "image": self.image_info,
            "model": ema,
            "ema": ema,
            "train_seconds": self.seconds,
            "snapshot": {"minutes": float(minutes), "seconds": self.seconds, "steps": self.step},
        }
