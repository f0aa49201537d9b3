"""Ground-truth worlds: PyBullet scenes and a voxel world rendered on the CPU, registered as ``worldsim/<Name>-v0``.

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
    "worldsim/BlockWorld-v0": ("worldsim.envs.blockworld:BlockWorldEnv", 600),
}

#: The learned world: ``gymnasium.make(WORLD_MODEL_ID, checkpoint=...)`` gives the single env,
#: ``gymnasium.make_vec(WORLD_MODEL_ID, num_envs=N, checkpoint=...)`` the batched one. It truncates
#: at its own ``horizon`` argument, so no TimeLimit is registered.
WORLD_MODEL_ID = "worldsim/WorldModel-v0"


def world_name(world: str) -> str:
    """The short name of a world ("push") from its env id ("worldsim/Push-v0") or from itself."""
    return world.split("/")[-1].removesuffix("-v0").lower()


def register_envs() -> None:
    """Register every ground-truth world with Gymnasium; calling it twice is harmless."""
    for env_id, (entry_point, max_episode_steps) in WORLDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry_point, max_episode_steps=max_episode_steps)
    if WORLD_MODEL_ID not in gymnasium.registry:
        gymnasium.register(
            id=WORLD_MODEL_ID,
            entry_point="worldsim.envs.world_model:WorldModelEnv",
            vector_entry_point="worldsim.envs.world_model:WorldModelVectorEnv",
        )
