# Sourced by the device scripts. LOCAL=0 (on the device): assembles an importable worldsim in
# /tmp/site from .gpu/site and this tree (the image lacks pybullet, gymnasium and hydra).
# Defines `ws` (the CLI), REF (the shipped reference models) and `logged` (a metric's last value
# in a stage's Lightning CSV log).
LOCAL=${LOCAL:-0}
if [ "$LOCAL" = 0 ]; then
  SITE=/tmp/site; rm -rf $SITE; mkdir -p $SITE/worldsim
  cp -r .gpu/site/* $SITE/
  cp -r worldsim/* $SITE/worldsim/; cp -r envs $SITE/worldsim/envs; cp -r evals $SITE/worldsim/evals
  cp -r configs $SITE/worldsim/configs
  export PYTHONPATH=$SITE PYTHONSAFEPATH=1  # without SAFEPATH the tree's own worldsim/ shadows the site
  nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv
fi
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
ws() { python3 -m worldsim.cli "$@"; }
REF=$(python3 -c "from worldsim.references import REFERENCE_DIR; print(REFERENCE_DIR)") || exit 1

logged() {  # <stage dir> <metric>: its last logged value, 0 if none
  python3 - "$1" "$2" <<'PY'
import csv, glob, sys
rows = [r for f in sorted(glob.glob(sys.argv[1] + "/csv/version_*/metrics.csv")) for r in csv.DictReader(open(f))
        if r.get(sys.argv[2])]
print(float(rows[-1][sys.argv[2]]) if rows else 0)
PY
}
