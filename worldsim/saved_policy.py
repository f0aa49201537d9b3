"""PPO policies read from a saved ``.zip`` without unpickling anything.

Stable-Baselines3's ``PPO.load`` unpickles the zip's ``data`` entry (its spaces, schedules and
policy class are cloudpickled), so a crafted file runs whatever code it names. worldsim never
calls it on a file a user hands over. ``load_ppo_policy`` reads only the zip's ``policy.pth`` with
``torch.load(weights_only=True)`` and rebuilds the network from what the caller knows: the
observation and action spaces come from the world model and env the policy is used with, the
layer sizes from the weights' shapes, everything else from SB3's defaults for ``MlpPolicy`` and
``CnnPolicy`` (what ``worldsim imagine`` trains). A file whose weights do not fit that network is
refused with the mismatch named.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any, Union

import gymnasium
import torch

from worldsim.checkpoint import load_weights_only

WEIGHTS_ENTRY = "policy.pth"  # where SB3's save() puts the policy's state_dict
_HIDDEN = re.compile(r"^mlp_extractor\.(policy|value)_net\.(\d+)\.weight$")
SAVED_HINT = "give a policy `worldsim imagine` saved (<out>/ppo_<name>.zip)"


def read_policy_weights(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> dict[str, torch.Tensor]:
    """The state_dict inside an SB3 zip, read with ``weights_only=True``; the rest of the zip is never read."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} is no file: {SAVED_HINT}")
    try:
        with zipfile.ZipFile(path) as archive:
            raw = archive.read(WEIGHTS_ENTRY)
    except (zipfile.BadZipFile, KeyError, OSError) as error:
        raise ValueError(f"{path} is not a saved SB3 policy ({error}): {SAVED_HINT}") from None
    try:
        state = load_weights_only(io.BytesIO(raw), device)
    except ValueError as error:
        raise ValueError(f"{path}: its {WEIGHTS_ENTRY}: {error}; worldsim never unpickles code: {SAVED_HINT}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: its {WEIGHTS_ENTRY} holds no state_dict of tensors: {SAVED_HINT}")
    return state


def net_arch_of(state: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    """The hidden layer sizes of the policy and value MLPs, read from their weights' shapes."""
    layers: dict[str, dict[int, int]] = {"policy": {}, "value": {}}
    for key, weight in state.items():
        match = _HIDDEN.match(key)
        if match:
            layers[match[1]][int(match[2])] = int(weight.shape[0])
    return {
        "pi": [size for _, size in sorted(layers["policy"].items())],
        "vf": [size for _, size in sorted(layers["value"].items())],
    }


def load_ppo_policy(
    path: Union[str, Path],
    observation_space: gymnasium.Space,
    action_space: gymnasium.Space,
    device: Union[str, torch.device] = "cpu",
) -> Any:
    """An SB3 ``ActorCriticPolicy`` for these spaces with the weights saved at ``path``, in eval mode.

    It acts like the loaded agent did: ``policy.predict(observation, deterministic=True)``. Images
    (uint8 frames, HWC or CHW) get ``CnnPolicy``'s network, anything else ``MlpPolicy``'s.
    """
    from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy
    from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
    from stable_baselines3.common.vec_env import VecTransposeImage

    state = read_policy_weights(path, device)
    arch = net_arch_of(state)
    image = is_image_space(observation_space)
    if image and not is_image_space_channels_first(observation_space):
        # SB3 trains CNNs on channel-first frames; predict() transposes each observation to match
        observation_space = VecTransposeImage.transpose_space(observation_space)
    cls = ActorCriticCnnPolicy if image else ActorCriticPolicy
    policy = cls(
        observation_space,
        action_space,
        lr_schedule=lambda _: 0.0,
        net_arch=arch["pi"] if arch["pi"] == arch["vf"] else arch,
    )
    try:
        policy.load_state_dict(state)
    except RuntimeError as error:
        reason = " ".join(str(error).split())
        raise ValueError(
            f"{path} does not fit a PPO {cls.__name__} observing {observation_space} and acting in "
            f"{action_space} ({reason[:400]}): pass the model, observation and env the policy was trained with"
        ) from None
    policy.to(device)
    policy.set_training_mode(False)
    return policy
