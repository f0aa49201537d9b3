"""Stable-Baselines3 over Gymnasium vector envs: ``GymnasiumVecEnv`` (and ``StepClock``, its stopwatch).

SB3 takes its own ``VecEnv`` API, not Gymnasium's ``VectorEnv``. Wrapping a batched env such as
``WorldModelVectorEnv`` in SB3's ``DummyVecEnv`` would step its sub-envs one at a time; this
adapter keeps one batched ``step`` for all of them::

    envs = gymnasium.make_vec("worldsim/WorldModel-v0", num_envs=16, checkpoint="runs/push/model.pt",
                              observation="latent")
    PPO("MlpPolicy", GymnasiumVecEnv(envs)).learn(100_000)

SB3's convention differs from Gymnasium's in three ways, handled here: ``step_wait`` returns one
``done`` (terminated or truncated) and ``infos[i]["TimeLimit.truncated"]``; a finished sub-env is
reset inside the same step, its last observation moved to ``infos[i]["terminal_observation"]``;
infos are a list of dicts, not Gymnasium's dict of arrays with ``_key`` masks.
"""

from __future__ import annotations

import time
from copy import deepcopy
from typing import Any, Optional, Sequence

import gymnasium
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

try:
    from stable_baselines3.common.vec_env.base_vec_env import (
        VecEnv,
        VecEnvIndices,
        VecEnvObs,
        VecEnvStepReturn,
        VecEnvWrapper,
    )
except ImportError as error:
    raise ImportError(
        'worldsim.rl needs Stable-Baselines3, an optional extra: pip install -e ".[rl]" '
        '(or pip install "stable-baselines3>=2.4")'
    ) from error


def unbatch_infos(infos: dict[str, Any], num_envs: int) -> list[dict[str, Any]]:
    """Gymnasium's vector infos (arrays with ``_key`` masks, nested dicts alike) -> one dict per sub-env."""
    out: list[dict[str, Any]] = [{} for _ in range(num_envs)]
    for key, value in infos.items():
        if key.startswith("_"):
            continue
        mask = np.asarray(infos.get(f"_{key}", np.ones(num_envs, bool)), bool)
        rows = unbatch_infos(value, num_envs) if isinstance(value, dict) else value
        for i in np.flatnonzero(mask):
            out[i][key] = rows[i]
    return out


def observation_row(observations: Any, index: int) -> Any:
    """Sub-env ``index``'s observation out of a batch (a dict of arrays for Dict spaces)."""
    if isinstance(observations, dict):
        return {key: observation_row(value, index) for key, value in observations.items()}
    return np.array(observations[index])


def _merge(observations: Any, fresh: Any, rows: np.ndarray) -> Any:
    """``observations`` with the ``rows`` taken from ``fresh`` (a batch of the same space)."""
    if isinstance(observations, dict):
        return {key: _merge(observations[key], fresh[key], rows) for key in observations}
    merged = np.array(observations)
    merged[rows] = np.asarray(fresh)[rows]
    return merged


class GymnasiumVecEnv(VecEnv):
    """An SB3 ``VecEnv`` over a Gymnasium ``VectorEnv``: one batched step for all sub-envs.

    Autoreset follows the vector env's ``metadata["autoreset_mode"]``:

    * ``NEXT_STEP`` (Gymnasium's default, and ``WorldModelVectorEnv``'s) and ``DISABLED``: the
      sub-envs that finish are restarted at once with ``reset(options={"reset_mask": done})``, so
      no step is spent on Gymnasium's "reset step" (its action ignored, reward 0) that SB3 would
      otherwise learn from as a real transition.
    * ``SAME_STEP``: the vector env already restarted them; the last observation and step info
      come from ``infos["final_obs"]`` and ``infos["final_info"]``.

    ``seed(s)`` takes effect at the next ``reset``, which seeds the vector env with ``s`` (sub-env
    i then gets ``s + i`` in Gymnasium's own vector envs, as in SB3's ``DummyVecEnv``). Attributes
    are read from the vector env itself, where a batched env keeps them for all its sub-envs.
    """

    def __init__(self, env: VectorEnv) -> None:
        if not isinstance(env, VectorEnv):
            raise TypeError(
                f"GymnasiumVecEnv wraps a gymnasium.vector.VectorEnv, not {type(env).__name__}: "
                "wrap single envs in stable_baselines3's DummyVecEnv instead"
            )
        self.env = env
        self.autoreset_mode = AutoresetMode(env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP))
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        self._actions: Optional[np.ndarray] = None

    # -- the VecEnv protocol -------------------------------------------------------------------------

    def reset(self) -> VecEnvObs:
        seed = self._seeds[0]  # VecEnv.seed(s) stores s, s + 1, ...: the vector env derives its own
        options = self._options[0] or None  # one vector env, one reset: sub-env 0's options for all
        observations, infos = self.env.reset(seed=seed, options=options)
        self.reset_infos = unbatch_infos(infos, self.num_envs)
        self._reset_seeds()
        self._reset_options()
        return observations

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() without step_async(actions): call step(actions)")
        observations, rewards, terminated, truncated, infos = self.env.step(self._actions)
        self._actions = None
        terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
        dones = terminated | truncated
        finished = np.flatnonzero(dones)
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            step_infos, last = self._same_step_infos(infos, finished)
        else:
            step_infos = unbatch_infos(infos, self.num_envs)
            last = {i: observation_row(observations, i) for i in finished}
            if finished.size:
                fresh, reset_infos = self.env.reset(options={"reset_mask": dones.copy()})
                observations = _merge(observations, fresh, dones)
                reset_infos = unbatch_infos(reset_infos, self.num_envs)
                for i in finished:
                    self.reset_infos[i] = reset_infos[i]
        for i in range(self.num_envs):
            step_infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        for i in finished:
            step_infos[i]["terminal_observation"] = last[i]
        return observations, np.asarray(rewards, np.float32), dones, step_infos

    def _same_step_infos(
        self, infos: dict[str, Any], finished: np.ndarray
    ) -> tuple[list[dict[str, Any]], dict[int, Any]]:
        """SAME_STEP: per sub-env step infos and the finished sub-envs' last observations.

        Gymnasium puts a finished sub-env's step info under ``final_info`` and its reset info at the
        top level; SB3 wants the step info in ``infos`` and the reset info in ``reset_infos``.
        """
        if finished.size and "final_obs" not in infos:
            raise KeyError(
                f"sub-envs {finished.tolist()} finished but the SAME_STEP vector env gave no infos['final_obs']"
            )
        final_info = unbatch_infos(infos.get("final_info", {}), self.num_envs)
        own = {k: v for k, v in infos.items() if k.lstrip("_") not in ("final_obs", "final_info")}
        step_infos = unbatch_infos(own, self.num_envs)
        for i in finished:
            self.reset_infos[i], step_infos[i] = step_infos[i], dict(final_info[i])
        return step_infos, {i: deepcopy(infos["final_obs"][i]) for i in finished}

    def close(self) -> None:
        self.env.close()

    def get_images(self) -> Sequence[Optional[np.ndarray]]:
        images = self.env.render()
        return list(images) if images is not None else [None] * self.num_envs

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.env, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gymnasium.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        # A vector env is not made of gymnasium.Wrapper-wrapped single envs SB3 could look into.
        return [False for _ in self._get_indices(indices)]


class StepClock(VecEnvWrapper):
    """Sums the seconds spent in the wrapped env's ``reset`` and ``step`` and counts the episodes started.

    Tells env throughput apart from the learner's: ``timesteps / seconds`` is the env's frames/s alone.
    """

    def __init__(self, venv: VecEnv) -> None:
        super().__init__(venv)
        self.seconds, self.episodes = 0.0, 0

    def reset(self) -> VecEnvObs:
        start = time.perf_counter()
        observations = self.venv.reset()
        self.seconds += time.perf_counter() - start
        self.episodes += self.num_envs
        return observations

    def step_wait(self) -> VecEnvStepReturn:
        start = time.perf_counter()
        observations, rewards, dones, infos = self.venv.step_wait()
        self.seconds += time.perf_counter() - start
        self.episodes += int(np.sum(dones))  # each finished sub-env has already started its next episode
        return observations, rewards, dones, infos
