"""The reference models shipped inside the package: one exported ``model.pt`` per world.

``reference_checkpoint("push")`` gives the file, so a fresh install can step and evaluate a
trained model at once::

    env = gymnasium.make("worldsim/WorldModel-v0", checkpoint=worldsim.reference_checkpoint("push"))

``worldsim train experiment=<world>_reference`` reproduces each (``configs/experiment/``); how each
was trained, with its logs and figures, is in the repository's ``docs/reference-logs/``.
"""

from __future__ import annotations

from pathlib import Path

from worldsim.envs import world_name

REFERENCE_DIR = Path(__file__).parent / "reference"
#: Inverse-dynamics models (``<world>_idm.pt``) lie beside the world models; they predict no frames.
IDM_SUFFIX = "_idm"


def is_world_model_file(path: Path) -> bool:
    """Whether a ``.pt`` of the reference folder is a world model (not an inverse-dynamics model)."""
    return path.suffix == ".pt" and not path.stem.endswith(IDM_SUFFIX)


def reference_worlds() -> list[str]:
    """The worlds with a shipped reference model, by short name ("physics", "push", ...)."""
    return sorted(path.stem for path in REFERENCE_DIR.glob("*.pt") if is_world_model_file(path))


def reference_idm(world: str = "blockworld") -> Path:
    """The shipped inverse-dynamics model of ``world`` (only BlockWorld has one): the action suite's reader."""
    name = world_name(world)
    path = REFERENCE_DIR / f"{name}{IDM_SUFFIX}.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"no inverse-dynamics model for {world!r} in {REFERENCE_DIR}: train one with "
            "`worldsim train experiment=blockworld_idm` (BlockWorld is the one world that has one)"
        )
    return path


def reference_checkpoint(world: str) -> Path:
    """The shipped model file of ``world``: a short name ("push") or an env id ("worldsim/Push-v0")."""
    name = world_name(world)
    path = REFERENCE_DIR / f"{name}.pt"
    if not path.is_file() or not is_world_model_file(path):
        raise FileNotFoundError(
            f"no reference model for {world!r} in {REFERENCE_DIR}: shipped ones are {reference_worlds()}; "
            "train your own with `worldsim train` (see the README)"
        )
    return path
