#!/usr/bin/env bash
# One session on a lent GPU machine in one call: assemble worldsim there, run a plan against a
# deadline, pack what it wrote into $OUT.
#
#   bash benchmarks/gpu_run.sh PLAN                 # PLAN: a bash file of commands, run top to bottom
#   bash benchmarks/gpu_run.sh 'CMD' ['CMD' ...]    # or the commands themselves, one argument each
#   DRY_RUN=1 bash benchmarks/gpu_run.sh PLAN       # the same here, on the CPU, before it costs device time
#
# The machine has Python with torch, lightning, opencv and tensorboard, but no pybullet, gymnasium
# or hydra, and no network: run benchmarks/gpu_prepare.sh here once first, which builds .gpu/site,
# and carry it with the call (the device tool's carry: [".gpu"]). There, this script copies
# .gpu/site and this tree's worldsim (worldsim/, envs/, evals/, configs/) into $W/site and puts it
# first on the path with PYTHONSAFEPATH=1, so the tree's own worldsim/ cannot shadow it.
#
# A plan is plain bash. It sees:
#   ws ARGS       the worldsim CLI (ws train experiment=physics_reference out=$W/physics ...)
#   py ARGS       the Python that runs worldsim (py benchmarks/gpu_profile.py --preset mid)
#   el TEXT       prints TEXT with the seconds since the start
#   left          seconds until the plan's time is up (for trainer.max_time or max_seconds)
#   max_time S    S seconds as trainer.max_time writes them (DD:HH:MM:SS)
#   logged DIR M  the last value of metric M in a stage's Lightning CSV log (DIR: <run>/dynamics)
#   $W            the working folder: write everything there
#   $REF          the shipped reference models (push.pt, physics.pt, ...)
#   $DRY_RUN      1 in a dry run, so a plan can read its sizes from variables (EPISODES=${EPISODES:-1024})
#                 and the dry run shrink them
#   $WORKERS      processes that record data: 14 on the device, 2 in a dry run
#   $DRY_SIZES    overrides that make training and recording tiny on the CPU in a dry run, empty on the
#                 device: ws train ... $DRY_SIZES
# Commands may run side by side (cmd & ... wait). At DEADLINE - PACK_S seconds every process of
# the plan is stopped; then, or when the plan ends, $W's small files go to $OUT/results.tgz, the
# files matching KEEP to $OUT/keep.tar.part-* (SPLIT each; join with cat), and this script's
# output to $OUT/log.txt. docs/gpu-training.md has the sessions' plans.
#
# Settings (environment): DEADLINE (540: seconds from the start until everything is packed; a
# 600 s call leaves room), PACK_S (30), OUT (the device tool's $OUT; /tmp/gpu-dry/out in a dry
# run), W (/tmp/w; /tmp/gpu-dry/w), KEEP ('*/model.pt', paths under $W, space-separated globs),
# SPLIT (15M), PYTHON (python3), OMP_NUM_THREADS (4).
set -u
if [ $# -eq 0 ]; then sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; fi
START=$(date +%s)
DRY_RUN=${DRY_RUN:-0}
if [ "$DRY_RUN" = 1 ]; then OUT=${OUT:-/tmp/gpu-dry/out}; W=${W:-/tmp/gpu-dry/w}; else OUT=${OUT:?is where results go: the device tool sets it; DRY_RUN=1 runs here}; W=${W:-/tmp/w}; fi
DEADLINE=${DEADLINE:-540}; PACK_S=${PACK_S:-30}; KEEP=${KEEP:-*/model.pt}; SPLIT=${SPLIT:-15M}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT" "$W"
exec > >(tee -a "$OUT/log.txt") 2>&1

el() { echo "[$(( $(date +%s) - START ))s] $*"; }
left() { echo $(( DEADLINE - PACK_S - ($(date +%s) - START) )); }
max_time() { printf "00:%02d:%02d:%02d" $(($1 / 3600)) $(($1 / 60 % 60)) $(($1 % 60)); }
ws() { "$PYTHON" -m worldsim.cli "$@"; }
py() { "$PYTHON" "$@"; }
logged() {
  "$PYTHON" - "$1" "$2" <<'PY'
import csv, glob, sys
rows = [r for f in sorted(glob.glob(sys.argv[1] + "/csv/version_*/metrics.csv")) for r in csv.DictReader(open(f))
        if r.get(sys.argv[2])]
print(float(rows[-1][sys.argv[2]]) if rows else "n/a")
PY
}
if [ "$DRY_RUN" = 1 ]; then
  WORKERS=2
  DRY_SIZES="trainer.accelerator=cpu trainer.precision=32-true dynamics_data.batch_size=2 dynamics_data.num_workers=0
             collect.workers=2"
else
  WORKERS=14; DRY_SIZES=""
fi
export -f el left max_time ws py logged
export START DEADLINE PACK_S PYTHON W DRY_RUN WORKERS DRY_SIZES PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}

pack() {
  tar czf "$OUT/results.tgz" -C "$W" --exclude=./site --exclude='*.ckpt' --exclude='*.pt' --exclude='data*' \
      --exclude='*latent*' --exclude='tensorboard' . 2>/dev/null
  local kept
  kept=$(cd "$W" && for pattern in $KEEP; do compgen -G "$pattern"; done)
  rm -f "$OUT"/keep.tar.part-*
  if [ -n "$kept" ]; then (cd "$W" && tar cf - $kept) | split -b "$SPLIT" - "$OUT/keep.tar.part-"; fi
  el "packed: $OUT/results.tgz, $(echo $kept | wc -w) kept file(s) in $OUT/keep.tar.part-*"
}

# -- assemble worldsim --------------------------------------------------------------------------------
SITE=$W/site
rm -rf "$SITE" && mkdir -p "$SITE/worldsim"
if [ -d .gpu/site ]; then
  cp -r .gpu/site/. "$SITE/"
elif [ "$DRY_RUN" != 1 ]; then
  echo "gpu_run: .gpu/site is missing: run bash benchmarks/gpu_prepare.sh here and carry .gpu with the call" >&2
  exit 1
fi
cp -r worldsim/. "$SITE/worldsim/" && cp -r envs "$SITE/worldsim/envs" && cp -r evals "$SITE/worldsim/evals" \
  && cp -r configs "$SITE/worldsim/configs"
export PYTHONPATH=$SITE PYTHONSAFEPATH=1
REF=$("$PYTHON" -c "from worldsim.references import REFERENCE_DIR; print(REFERENCE_DIR)") || exit 1
export REF
"$PYTHON" -c "import torch, worldsim, worldsim.training.train as t
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), '| worldsim from', worldsim.__path__[0])" || exit 1
[ "$DRY_RUN" = 1 ] || nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv
el "assembled"

# -- the plan ----------------------------------------------------------------------------------------
if [ $# -eq 1 ] && [ -f "$1" ]; then
  PLAN=$1
else
  PLAN=$W/plan.sh
  printf '%s\n' "$@" > "$PLAN"
fi
cp "$PLAN" "$W/plan-ran.sh"
trap pack EXIT
# timeout signals its whole process group: the plan and whatever it started in the background.
if [ "$(left)" -gt 0 ]; then timeout -k 10 "$(left)" bash "$PLAN"; status=$?; else status=124; fi
if [ $status = 124 ]; then el "plan stopped at the deadline"; else el "plan ended: exit status $status"; fi
