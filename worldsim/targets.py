"""Load a user's object named ``package.module:attr`` or ``path/to/file.py:attr``.

One loader for every place that takes user code by name (collection policies, eval predictors),
so both accept the same forms and fail with the same kind of message.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any


def _module(target: str, what: str, spec: str) -> Any:
    if target.endswith(".py"):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"{what} {spec!r}: file {path} does not exist")
        # The path is part of the name, so two files called policy.py do not shadow each other.
        name = f"_worldsim_user_{abs(hash(str(path)))}_{path.stem}"
        if name not in sys.modules:
            loader_spec = importlib.util.spec_from_file_location(name, path)
            assert loader_spec is not None and loader_spec.loader is not None
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[name] = module
            try:
                loader_spec.loader.exec_module(module)
            except Exception:
                del sys.modules[name]
                raise
        return sys.modules[name]
    try:
        return importlib.import_module(target)
    except ImportError as error:
        raise ValueError(
            f"{what} {spec!r}: cannot import module {target!r} ({error}); install it, or name a file "
            f"as 'path/to/file.py:name'"
        ) from None


def load_target(spec: str, what: str) -> Any:
    """The object ``spec`` names; dotted attributes (``module:Outer.make``) are followed.

    ``what`` ("policy", "predictor") starts every error message, so it says what was being loaded.
    """
    target, sep, attribute = spec.rpartition(":")
    if not sep or not target or not attribute:
        raise ValueError(f"{what} {spec!r} must look like 'package.module:name' or 'path/to/file.py:name'")
    module = _module(target, what, spec)
    obj: Any = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in dir(module) if not n.startswith("_"))
            raise ValueError(f"{what} {spec!r}: {target} has no attribute {attribute!r}; it has {public}")
        obj = getattr(obj, part)
    return obj
