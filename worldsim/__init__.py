"""worldsim: learn a world from simulator episodes, step it like a Gymnasium env, audit it."""

from worldsim.envs import register_envs

__version__ = "0.1.0"

register_envs()
