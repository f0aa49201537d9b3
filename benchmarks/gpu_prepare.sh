#!/usr/bin/env bash
# Build .gpu/site: what a lent GPU machine lacks to run worldsim (its image has torch, lightning,
# opencv and tensorboard for Python 3.12, but no pybullet, gymnasium or hydra, and no network).
# benchmarks/gpu_run.sh assembles worldsim from it there. Run once per checkout, here, from the
# repository root; .gpu/ is ignored by git and carried with the device call (`carry: [".gpu"]`).
# Needs the network (pybullet's source from PyPI), the rl extra installed here (Stable-Baselines3
# for `worldsim imagine`), and a Python 3.12 to compile pybullet for the machine's interpreter
# (PYTHON312, default: pyenv's 3.12); about 3 minutes on 2 cores.
#   bash benchmarks/gpu_prepare.sh
set -euo pipefail
PYTHON312=${PYTHON312:-"env PYENV_VERSION=3.12.1 python3.12"}
SITE=.gpu/site
EXCLUDE=$(git rev-parse --git-path info/exclude)  # a worktree's .git is a file: ask git where its excludes live
mkdir -p "$(dirname "$EXCLUDE")" && { grep -qx "/.gpu/" "$EXCLUDE" 2>/dev/null || echo "/.gpu/" >> "$EXCLUDE"; }
rm -rf "$SITE" && mkdir -p "$SITE" /tmp/gpu-prepare
# pybullet has no cp312 wheel on PyPI: build one from the sdist (about 3 minutes on 2 cores), keep
# only the stripped extension (8 MB instead of 108) and the bullet_client helper worldsim imports.
python3 -m pip download -q --no-deps --no-binary=:all: -d /tmp/gpu-prepare pybullet==3.2.7
$PYTHON312 -m pip wheel -q --no-deps -w /tmp/gpu-prepare /tmp/gpu-prepare/pybullet-3.2.7.tar.gz
(cd /tmp/gpu-prepare && unzip -q -o pybullet-3.2.7-cp312-*.whl 'pybullet.cpython-312*' \
    'pybullet-3.2.7.dist-info/*' 'pybullet_utils/__init__.py' 'pybullet_utils/bullet_client.py')
strip /tmp/gpu-prepare/pybullet.cpython-312-x86_64-linux-gnu.so
cp -r /tmp/gpu-prepare/pybullet.cpython-312-x86_64-linux-gnu.so /tmp/gpu-prepare/pybullet-3.2.7.dist-info \
      /tmp/gpu-prepare/pybullet_utils "$SITE/"
# Pure-Python dependencies, copied from this environment's installation (Stable-Baselines3 and
# cloudpickle for `worldsim imagine`: install the rl extra here first).
SP=$(python3 -c "import hydra, os; print(os.path.dirname(os.path.dirname(hydra.__file__)))")
for name in hydra hydra_core-*.dist-info omegaconf omegaconf-*.dist-info antlr4 antlr4_python3_runtime-*.dist-info \
            gymnasium gymnasium-*.dist-info farama_notifications farama_notifications-*.dist-info \
            stable_baselines3 stable_baselines3-*.dist-info cloudpickle cloudpickle-*.dist-info; do
  cp -r "$SP"/$name "$SITE/"
done
find "$SITE" -name __pycache__ -prune -exec rm -rf {} +
$PYTHON312 -c "import sys; sys.path.insert(0, '$SITE'); import pybullet; from pybullet_utils.bullet_client import BulletClient; BulletClient(pybullet.DIRECT); print('pybullet for 3.12: ok')"
du -sh "$SITE"
