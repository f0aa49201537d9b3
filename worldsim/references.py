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


def reference_worlds() -> list[str]:
    """The worlds with a shipped reference model, by short name ("physics", "push", ...)."""
    return sorted(path.stem for path in REFERENCE_DIR.glob("*.pt"))


def reference_checkpoint(world: str) -> Path:
    """The shipped model file of ``world``: a short name ("push") or an env id ("worldsim/Push-v0")."""
    name = world_name(world)
    path = REFERENCE_DIR / f"{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"no reference model for {world!r} in {REFERENCE_DIR}: shipped ones are {reference_worlds()}; "
            "train your own with `worldsim train` (see the README)"
        )
    return path
