"""worldsim: learn a world from simulator episodes, step it like a Gymnasium env, audit it."""

from typing import Any

from worldsim.envs import register_envs

__version__ = "0.1.0"

register_envs()


def __getattr__(name: str) -> Any:
    # Lazily, so `import worldsim` (and every env registration) stays free of torch.
    if name == "WorldModel":
        from worldsim.world_model import WorldModel

        return WorldModel
    if name in ("reference_checkpoint", "reference_worlds"):
        from worldsim import references

        return getattr(references, name)
    raise AttributeError(f"module 'worldsim' has no attribute {name!r}")
