"""worldsim: learn a world from simulator episodes, step it like a Gymnasium env, audit it."""

from typing import Any

from worldsim.envs import register_envs

__version__ = "0.1.0"

register_envs()


#: Public names, imported on first use so that `import worldsim` (and every env registration) stays
#: free of torch.
_EXPORTS = {
    "WorldModel": "worldsim.world_model",
    "WorldBatch": "worldsim.world_batch",
    "StepOutput": "worldsim.world_batch",
    "SamplingConfig": "worldsim.sampling",
    "reference_checkpoint": "worldsim.references",
    "reference_worlds": "worldsim.references",
    "reference_idm": "worldsim.references",
}

__all__ = ["__version__", "register_envs", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'worldsim' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
