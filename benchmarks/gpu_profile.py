"""Where a dynamics training step spends its time: the attention kernels alone, then whole steps.

Builds the DynamicsModule of a preset on random latent clips (no data, no trained model) and times
its training step (forward, backward, AdamW, EMA; bf16 autocast on CUDA) with the self-attention's
block-causal mask as the model builds it, without any mask (an upper bound on what a faster masked
kernel can win: full attention does more work), and through flex_attention with a block mask; then
prints the CUDA kernels of a few profiled baseline steps. Before that, the attention alone (forward
and backward at the training shape) for each kernel SDPA may pick with the boolean mask.
``--compile`` adds the step with the DiT compiled (as ``trainer.compile=true`` does). The model is
a preset of ``DIT_PRESETS`` (``--preset mid``, the references' size), its fields overridable one
by one (``--width``, ``--depth``, ...). Prints ms per step and clips/s; docs/gpu-training.md
("Where the training step goes") quotes its figures for ``small``.

    python benchmarks/gpu_profile.py                          # the small preset, batch 64, 16 frames
    python benchmarks/gpu_profile.py --preset mid --kinds mask --compile --no-attention --rows 0   # eager vs compiled
    python benchmarks/gpu_profile.py --preset tiny --batch 2 --frames 4 --steps 2 --rows 0   # CPU dry run
"""

from __future__ import annotations

import argparse
import contextlib
import time
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from worldsim.flow import FlowMatchingConfig
from worldsim.models.dit import DIT_PRESETS
from worldsim.training.dynamics_module import DynamicsConfig, DynamicsModule
from worldsim.training.optim import OptimConfig

CAPTIONS = ["red ball bounces left", "two blue cubes fall", "a green ball rolls right and stops", "nothing moves"]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device, steps: int, warmup: int = 3) -> float:
    """Mean seconds of fn() over `steps` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def block_causal(frames: int, tokens: int, device: torch.device) -> torch.Tensor:
    frame = torch.arange(frames * tokens, device=device) // tokens
    return frame[:, None] >= frame[None, :]


def flex_block_causal(frames: int, tokens: int, device: torch.device):
    from torch.nn.attention.flex_attention import create_block_mask

    def mask_mod(b, h, q, kv):
        return q // tokens >= kv // tokens

    S = frames * tokens
    return create_block_mask(mask_mod, None, None, S, S, device=str(device))


def attention_alone(args, device: torch.device, dtype: torch.dtype) -> None:
    """Forward + backward of one self-attention call at the training shape, per kernel."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    S, hd = args.frames * args.tokens, args.width // args.heads
    q, k, v = (
        torch.randn(args.batch, args.heads, S, hd, device=device, dtype=dtype, requires_grad=True) for _ in range(3)
    )
    mask = block_causal(args.frames, args.tokens, device)

    def run(attend: Callable[[], torch.Tensor]) -> Callable[[], None]:
        return lambda: attend().sum().backward()

    variants: dict[str, Callable[[], None]] = {
        "sdpa, bool mask, default pick": run(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask)),
        "sdpa, no mask (full attention)": run(lambda: F.scaled_dot_product_attention(q, k, v)),
    }
    for name, backend in [
        ("efficient", SDPBackend.EFFICIENT_ATTENTION),
        ("cudnn", SDPBackend.CUDNN_ATTENTION),
        ("math", SDPBackend.MATH),
    ]:

        def attend(backend=backend) -> torch.Tensor:
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

        variants[f"sdpa, bool mask, {name} only"] = run(attend)
    try:
        from torch.nn.attention.flex_attention import flex_attention

        compiled = torch.compile(flex_attention)
        block_mask = flex_block_causal(args.frames, args.tokens, device)
        variants["flex_attention, block mask (compiled)"] = run(lambda: compiled(q, k, v, block_mask=block_mask))
    except Exception as error:  # noqa: BLE001 - report and go on: this is a measurement script
        print(f"  flex_attention unavailable: {type(error).__name__}: {error}")
    print(f"attention alone: q, k, v {tuple(q.shape)} {dtype}, forward + backward")
    for name, fn in variants.items():
        try:
            print(f"  {name:42s} {timed(fn, device, args.steps) * 1e3:8.2f} ms")
        except Exception as error:  # noqa: BLE001
            print(f"  {name:42s} failed: {type(error).__name__}: {str(error)[:120]}")


@contextlib.contextmanager
def self_attention_as(kind: str, args, device: torch.device) -> Iterator[None]:
    """Swap the kernel behind the DiT's self-attention (the call given a 2-D mask) for a while."""
    original = F.scaled_dot_product_attention
    if kind == "mask":
        yield
        return
    if kind == "flex":
        from torch.nn.attention.flex_attention import flex_attention

        compiled = torch.compile(flex_attention)
        block_mask = flex_block_causal(args.frames, args.tokens, device)

    def patched(q, k, v, attn_mask=None, **kwargs):
        if attn_mask is None or attn_mask.ndim != 2:
            return original(q, k, v, attn_mask=attn_mask, **kwargs)
        if kind == "none":
            return original(q, k, v, **kwargs)
        return compiled(q, k, v, block_mask=block_mask)

    F.scaled_dot_product_attention = patched
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


def training_steps(args, device: torch.device) -> None:
    meta = {
        "latent_channels": args.channels,
        "latent_size": args.latent_size,
        "action_space": {"type": "Box", "shape": [2], "low": -1.0, "high": 1.0},
    }
    cfg = DynamicsConfig(preset=args.preset, dit=args.overrides, clip_length=args.frames, flow=FlowMatchingConfig())
    module = DynamicsModule(cfg, OptimConfig(), max_steps=1000, meta=meta).to(device)
    optimizer = module.configure_optimizers()["optimizer"]
    B, T = args.batch, args.frames
    batch = {
        "latents": torch.randn(B, T, args.channels, args.latent_size, args.latent_size, device=device),
        "actions": torch.rand(B, T, 2, device=device) * 2 - 1,
        "rewards": torch.zeros(B, T, device=device),
        "terminated": torch.zeros(B, T, dtype=torch.bool, device=device),
        "caption": [CAPTIONS[i % len(CAPTIONS)] for i in range(B)],
    }
    autocast = torch.autocast(device.type, torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    dit_params = sum(p.numel() for p in module.networks["dit"].parameters())
    print(
        f"training step: {args.preset} preset{f' with {args.overrides}' if args.overrides else ''}, "
        f"DiT {dit_params / 1e6:.2f}M, batch {B} of {T}-frame clips"
    )

    def step() -> None:
        with autocast:
            loss, _ = module.flow.loss(module.networks["dit"], *module._inputs(batch, module.networks["text"]))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        module.ema.update(module.networks)

    for kind in args.kinds.split(","):
        try:
            with self_attention_as(kind, args, device):
                seconds = timed(step, device, args.steps)
            print(f"  self-attention {kind:5s}: {seconds * 1e3:7.1f} ms/step, {B / seconds:7.0f} clips/s")
        except Exception as error:  # noqa: BLE001
            print(f"  self-attention {kind:5s}: failed: {type(error).__name__}: {str(error)[:160]}")
    if args.compile:
        module.networks["dit"].compile()
        seconds = timed(step, device, args.steps, warmup=5)
        print(f"  compiled DiT        : {seconds * 1e3:7.1f} ms/step, {B / seconds:7.0f} clips/s")

    if device.type != "cuda" or args.rows == 0:
        return
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            step()
        synchronize(device)
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=args.rows, max_name_column_width=70))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=sorted(DIT_PRESETS), help="DiT and text encoder size")
    parser.add_argument("--width", type=int, help="DiT width (default: the preset's)")
    parser.add_argument("--depth", type=int, help="DiT blocks (default: the preset's)")
    parser.add_argument("--heads", type=int, help="attention heads (default: the preset's)")
    parser.add_argument("--text-width", type=int, help="text and reward-head width (default: the preset's)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--latent-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rows", type=int, default=30, help="kernels printed from the profile (0: no profile)")
    parser.add_argument("--kinds", default="mask,none,flex", help="self-attention variants to time")
    parser.add_argument("--compile", action="store_true", help="also time the step with the DiT compiled")
    parser.add_argument("--no-attention", dest="attention", action="store_false", help="skip attention alone")
    args = parser.parse_args()
    given = {
        "width": args.width,
        "depth": args.depth,
        "heads": args.heads,
        "text_width": args.text_width,
        "head_width": args.text_width,
    }
    args.overrides = {key: value for key, value in given.items() if value is not None}
    dit = {**DIT_PRESETS[args.preset], **args.overrides}
    args.width, args.heads = dit["width"], dit["heads"]  # the shape of attention alone
    args.tokens = args.latent_size**2
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        print(torch.cuda.get_device_name(), "torch", torch.__version__)
    if args.attention:
        attention_alone(args, device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    training_steps(args, device)


if __name__ == "__main__":
    main()
