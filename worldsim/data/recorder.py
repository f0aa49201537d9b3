"""Record one episode of any Gymnasium env into an :class:`Episode`.

Envs differ in where their pictures come from: worldsim worlds observe RGB frames, classic
control envs observe state vectors and draw through ``render()``. :class:`EpisodeRecorder` hides
that, resizes frames when asked, and stacks worldsim's ground truth from ``info`` over time
without knowing its key names.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

import cv2
import gymnasium
import numpy as np

from worldsim.data.episode import Episode
from worldsim.envs.policy import Policy
from worldsim.spaces import action_codec, check_action, is_image_space


class EpisodeRecorder:
    """Steps one env with one policy and returns whole episodes.

    frame_size: (H, W) to resize frames to with INTER_AREA (segmentation: nearest), or None.
    max_steps: cap on steps per episode; a capped episode ends ``truncated`` like a TimeLimit.
    """

    def __init__(
        self,
        env: gymnasium.Env,
        policy: Policy,
        *,
        frame_size: Optional[tuple[int, int]],
        max_steps: Optional[int],
        record_images: bool,
        env_id: str,
    ) -> None:
        self.env, self.policy = env, policy
        self.frame_size, self.max_steps = frame_size, max_steps
        self.record_images, self.env_id = record_images, env_id
        self.from_observation = is_image_space(env.observation_space)
        self.to_stored, self.to_env = action_codec(env.action_space)

    def _resize(self, image: np.ndarray, interpolation: int) -> np.ndarray:
        if self.frame_size is None or image.shape[:2] == tuple(self.frame_size):
            return image
        height, width = self.frame_size
        return cv2.resize(image, (width, height), interpolation=interpolation)

    def _frame(self, observation: Any) -> np.ndarray:
        frame = observation if self.from_observation else self.env.render()
        # Copy: envs may reuse one buffer for every observation and info (Gymnasium warns, but
        # allows it), and a stored episode must not change under a later step. C order matters:
        # pygame renders transposed views, and cv2.resize is ~5x slower on those.
        frame = np.array(frame, order="C") if frame is not None else None
        if frame is None or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
            got = "None" if frame is None else f"{frame.dtype} {frame.shape}"
            raise ValueError(
                f"{self.env_id} gave a frame of {got}: frames must be (H, W, 3) uint8 "
                "RGB; make the env with render_mode='rgb_array'"
            )
        return self._resize(frame, cv2.INTER_AREA)

    def _images(self, info: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        missing = [key for key in ("segmentation", "depth") if key not in info]
        if missing:
            raise ValueError(
                f"record_images=true but {self.env_id} puts no {missing} in info: only "
                "worldsim worlds provide them; set record_images=false"
            )
        segmentation = self._resize(np.array(info["segmentation"], np.int16), cv2.INTER_NEAREST)
        depth = self._resize(np.array(info["depth"], np.float32), cv2.INTER_NEAREST)
        return segmentation, depth.astype(np.float16)

    def _state(self, info: dict[str, Any], first: Optional[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        state = {key: np.array(value) for key, value in info.get("state", {}).items()}
        if first is not None:
            for key, value in state.items():
                if key not in first or value.shape != first[key].shape or value.dtype != first[key].dtype:
                    raise ValueError(
                        f"{self.env_id} changed info['state'][{key!r}] to {value.dtype} {value.shape} "
                        "mid-episode: state arrays need a fixed shape and dtype per env instance"
                    )
            if state.keys() != first.keys():
                raise ValueError(
                    f"{self.env_id} changed the keys of info['state'] from "
                    f"{sorted(first)} to {sorted(state)} mid-episode"
                )
        return state

    def check(self) -> tuple[int, ...]:
        """Reset once and raise ValueError if frames or images are unusable; return the frame shape."""
        observation, info = self.env.reset(seed=0)
        if self.record_images:
            self._images(info)
        return self._frame(observation).shape

    def record(self, seed: int) -> Episode:
        """One episode from ``env.reset(seed=seed)`` with the policy reset to the same seed."""
        observation, info = self.env.reset(seed=seed)
        self.policy.reset(seed)
        frames = [self._frame(observation)]
        states = [self._state(info, None)]
        images = [self._images(info)] if self.record_images else []
        caption = str(info.get("caption", ""))
        params, split = copy.deepcopy(info.get("params", {})), str(info.get("split", ""))
        actions, rewards, terminated, truncated = [], [], [], []
        while True:
            action = self.to_stored(
                check_action(self.env.action_space, self.policy(observation, info), "the policy's action")
            )
            observation, reward, term, trunc, info = self.env.step(self.to_env(action))
            actions.append(action)
            rewards.append(reward)
            frames.append(self._frame(observation))
            states.append(self._state(info, states[0]))
            if self.record_images:
                images.append(self._images(info))
            capped = self.max_steps is not None and len(actions) >= self.max_steps
            terminated.append(bool(term))
            truncated.append(bool(trunc) or (capped and not term))
            if term or trunc or capped:
                break
        return Episode(
            frames=np.stack(frames),
            actions=np.stack(actions),
            rewards=np.asarray(rewards, dtype=np.float32),
            terminated=np.asarray(terminated, dtype=bool),
            truncated=np.asarray(truncated, dtype=bool),
            caption=caption,
            state={key: np.stack([s[key] for s in states]) for key in states[0]},
            segmentation=np.stack([s for s, _ in images]) if images else None,
            depth=np.stack([d for _, d in images]) if images else None,
            seed=seed,
            env_id=self.env_id,
            params=params,
            split=split,
        )
