"""Episode datasets: record them from any Gymnasium env, store them, serve training clips.

``collect`` (worldsim.data.collect) writes shards described in worldsim.data.storage;
``EpisodeDataset`` reads them; ``cache_latents`` encodes every frame once (worldsim.data.latents);
``ClipDataset`` serves fixed-length clips of frames and latents (worldsim.data.clips). Names are
imported lazily so that collection worker processes never import torch. Nothing here imports
Lightning: the training stages wrap these datasets in their own DataModules.
The ``collect`` function lives at ``worldsim.data.collect.collect``: re-exporting it here would be
shadowed by the submodule of the same name.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Episode": "worldsim.data.episode",
    "EpisodeDataset": "worldsim.data.dataset",
    "DatasetError": "worldsim.data.storage",
    "SCHEMA_VERSION": "worldsim.data.storage",
    "CollectConfig": "worldsim.data.collect",
    "CollectSummary": "worldsim.data.collect",
    "CollectError": "worldsim.data.collect",
    "ClipDataset": "worldsim.data.clips",
    "LatentCache": "worldsim.data.latents",
    "cache_latents": "worldsim.data.latents",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'worldsim.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
