"""The ``worldsim`` console script: one Hydra app per subcommand.

``worldsim <command> [key=value ...]`` composes ``configs/<command>.yaml`` over the command's
typed config dataclass, so overrides, ``--help``, ``--cfg job`` and ``--multirun`` all behave as in
any Hydra app, and a misspelt key is an error rather than a silent default.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import io
import os
import sys
import textwrap
import tokenize
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf


@dataclass(frozen=True)
class Command:
    config: str  # "module:ConfigDataclass", the structured schema of configs/<name>.yaml
    run: str  # "module:function" called with the config dataclass
    summary: str  # one line for `worldsim --help`


COMMANDS: dict[str, Command] = {
    "collect": Command(
        config="worldsim.data.collect:CollectConfig",
        run="worldsim.data.collect:collect",
        summary="record episodes from any Gymnasium env (worldsim worlds or yours) into a dataset",
    ),
    "bench": Command(
        config="worldsim.bench:BenchConfig",
        run="worldsim.bench:bench",
        summary="print performance figures (collection frames/s; world-model env latency, throughput, memory) as JSON",
    ),
    "train": Command(
        config="worldsim.training.train:TrainConfig",
        run="worldsim.training.train:train",
        summary="train the frame autoencoder, then the latent dynamics model (stage=autoencoder|dynamics|all; experiment=<recipe>)",
    ),
    "quickstart": Command(
        config="worldsim.quickstart:QuickstartConfig",
        run="worldsim.quickstart:quickstart",
        summary="the whole loop, CPU-sized: record every world, train the tiny model, evaluate, report",
    ),
    "eval": Command(
        config="worldsim.evals.run:EvalConfig",
        run="worldsim.evals.run:evaluate",
        summary="score models and baselines on the physics, permanence, consistency, action, rollout, reconstruction and conditioning suites (reward on request); write the report",
    ),
    "play": Command(
        config="worldsim.play:PlayConfig",
        run="worldsim.play:play",
        summary="drive a trained model with the keyboard or a policy; save it beside the real env as gif/mp4 with PSNR and rewards",
    ),
    "generate": Command(
        config="worldsim.generate:GenerateConfig",
        run="worldsim.generate:generate",
        summary="imagine videos from a caption, alone or after a real or dataset context: gif, mp4, a contact sheet per prompt",
    ),
    "imagine": Command(
        config="worldsim.imagine:ImagineConfig",
        run="worldsim.imagine:imagine",
        summary="train PPO (Stable-Baselines3) inside a learned Push world and in the real one, score both in the real env; re-score saved runs (rescore=) or pool seeds (pool.*)",
    ),
}


def _load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: worldsim <command> [key=value ...] [--help] [--multirun]",
        "",
        "Learn a world from simulator episodes, step it like a Gymnasium env, audit it.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()),
        "",
        "`worldsim <command> --help` shows that command's config and how to override it.",
    ]
    return "\n".join(lines)


def field_docs(schema: type) -> dict[str, str]:
    """Each field's comment in a config dataclass's source, its CLI help: the comment at the end of
    the field's line, or else the block of comment lines right above it (for help too long for one line)."""
    source = inspect.getsource(schema)
    comments: dict[int, tuple[str, bool]] = {}  # line -> (text, alone on its line)
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            alone = not token.line[: token.start[1]].strip()
            comments[token.start[0]] = (token.string.lstrip("#").strip(), alone)
    docs: dict[str, str] = {}
    field_names = {field.name for field in dataclasses.fields(schema)}
    for node in ast.parse(textwrap.dedent(source)).body[0].body:
        if (
            not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name))
            or node.target.id not in field_names
        ):
            continue
        trailing = comments.get(node.end_lineno)
        if trailing is not None and not trailing[1]:
            docs[node.target.id] = trailing[0]
            continue
        above, line = [], node.lineno - 1
        while line in comments and comments[line][1]:
            above.insert(0, comments[line][0])
            line -= 1
        if above:
            docs[node.target.id] = " ".join(above)
    return docs


def help_config(name: str, schema: type) -> dict[str, str]:
    """A ``hydra/help`` node whose header lists every field with its default and meaning."""
    docs = field_docs(schema)
    rows = []
    for field in dataclasses.fields(schema):
        default = (
            field.default
            if field.default is not dataclasses.MISSING
            else field.default_factory()  # type: ignore[misc]
            if field.default_factory is not dataclasses.MISSING
            else "(required)"
        )
        rows.append(f"  {field.name}={default}\n      {docs.get(field.name, '')}")
    # Two readers see this text: OmegaConf, which resolves ${...} unless escaped as \${...}, then
    # Hydra's string.Template, which reads $ itself unless doubled. A default such as
    # ${reference:physics} must pass both and still read as written.
    text = "\n".join(rows).replace("$", "$$").replace("$${", "$\\${")
    return {
        "app_name": f"worldsim {name}",
        "header": f"worldsim {name}: {COMMANDS[name].summary}\n\nOptions (override as key=value):\n{text}\n",
        "footer": "Use --cfg job to print the composed config, --multirun to sweep, "
        "--hydra-help for Hydra's own flags.\n",
        "template": "${hydra.help.header}\n== Composed config ==\n$CONFIG\n${hydra.help.footer}",
    }


def reference_path(world: str) -> str:
    """``${reference:push}`` in a config: the shipped reference model file of a world (recipes use it)."""
    from worldsim.references import reference_checkpoint

    return str(reference_checkpoint(world))


def register(name: str) -> Command:
    """Make ``configs/<name>.yaml`` composable: its typed schema, its help, the ``${reference:...}`` resolver."""
    if not OmegaConf.has_resolver("reference"):
        OmegaConf.register_new_resolver("reference", reference_path)
    command = COMMANDS[name]
    schema = _load(command.config)
    store = ConfigStore.instance()
    store.store(name=f"{name}_schema", node=schema)
    store.store(group="hydra/help", name=f"{name}_help", node=help_config(name, schema))
    return command


def hydra_app(name: str) -> Callable[[], None]:
    """The Hydra entry point of one subcommand; it reads its overrides from ``sys.argv``."""
    run = _load(register(name).run)

    @hydra.main(config_path="pkg://worldsim.configs", config_name=name, version_base="1.3")
    def app(cfg: DictConfig) -> None:
        try:
            run(OmegaConf.to_object(cfg))
        except Exception as error:
            if not is_user_error(error) or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"worldsim {name}: error: {error}\n{TRACEBACK_HINT}", file=sys.stderr)
            sys.exit(1)

    return app


TRACEBACK_HINT = "(HYDRA_FULL_ERROR=1 shows where it was raised)"


def is_user_error(error: BaseException) -> bool:
    """An error that says what to fix, shown as one message: bad values and files (ValueError, and the
    errors worldsim defines), and the system's (a missing file, a full disk). Anything else is a bug
    and keeps its traceback."""
    return isinstance(error, (ValueError, OSError)) or type(error).__module__.split(".")[0] == "worldsim"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = args[0], args[1:]
    # Long jobs report progress with plain prints (Stable-Baselines3's tables, epoch summaries);
    # piped to a file they would otherwise arrive in 8 KiB blocks, or only at the end.
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(line_buffering=True)
    if name not in COMMANDS:
        print(f"worldsim: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}\n", file=sys.stderr)
        print(usage(), file=sys.stderr)
        return 2
    # Hydra names the job (and its log file) after the calling script unless told otherwise. The
    # name goes in front of the user's overrides: argparse takes one run of them, so appended after
    # a flag (`--cfg job`) it would be rejected.
    first = next((i for i, arg in enumerate(rest) if "=" in arg and not arg.startswith("-")), len(rest))
    sys.argv = [f"worldsim {name}", *rest[:first], f"hydra.job.name={name}", *rest[first:]]
    hydra_app(name)()
    return 0


if __name__ == "__main__":
    sys.exit(main())
