"""Ground-truth worlds: PyBullet scenes rendered on the CPU, registered as ``worldsim/<Name>-v0``.

Importing this package only registers the ids (entry points are strings), so ``import worldsim``
stays cheap; PyBullet loads when an env is first made.
"""

from __future__ import annotations

import gymnasium

#: env id -> (entry point, default episode length in steps)
WORLDS: dict[str, tuple[str, int]] = {
    "worldsim/Physics-v0": ("worldsim.envs.physics:PhysicsEnv", 64),
    "worldsim/Push-v0": ("worldsim.envs.push:PushEnv", 128),
    "worldsim/Occlusion-v0": ("worldsim.envs.occlusion:OcclusionEnv", 64),
    "worldsim/Orbit-v0": ("worldsim.envs.orbit:OrbitEnv", 64),
}


def register_envs() -> None:
    """Register every ground-truth world with Gymnasium; calling it twice is harmless."""
    for env_id, (entry_point, max_episode_steps) in WORLDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(
                id=env_id, entry_point=entry_point, max_episode_steps=max_episode_steps
            )
