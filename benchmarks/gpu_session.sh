#!/usr/bin/env bash
# One lent-GPU session in one call (see benchmarks/README.md): record Physics and Push, train the
# small and tiny presets of each at once on the one GPU, evaluate them beside the shipped
# references and copy-last, measure the small DiT's throughput and MFU alone, and bench the
# world-model env. Step counts come from each run's throughput in a short probe, so the whole job
# fits the time given (AE_S, DYN_S: seconds of autoencoder and dynamics training). Results land in
# $OUT/results.tgz after each phase, the tiny models in $OUT/tiny-models.tar.
#   device run: bash benchmarks/gpu_session.sh 2>&1 | tee $OUT/log.txt   (carry .gpu, timeout 590)
#   CPU dry run: LOCAL=1 SMALL=tiny SB=2 EPISODES=6 CWORKERS=1 PROBE=10 AE_S=1 DYN_S=1 MIN_AE=20 \
#                MIN_DYN=20 NEVAL=2 BENCH_S=0.2 MEMSTEPS=30 MFU_STEPS=20 W=/tmp/gdry OUT=/tmp/gdry-out \
#                bash benchmarks/gpu_session.sh
set -u
START=$(date +%s)
el() { echo "[$(( $(date +%s) - START ))s] $*"; }
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
W=${W:-/tmp/w}; mkdir -p "$W"
EPISODES=${EPISODES:-1024}; CWORKERS=${CWORKERS:-7}
PROBE=${PROBE:-40}; AE_S=${AE_S:-60}; DYN_S=${DYN_S:-180}
NEVAL=${NEVAL:-64}; BENCH_S=${BENCH_S:-1.0}; MEMSTEPS=${MEMSTEPS:-2000}; MFU_STEPS=${MFU_STEPS:-150}
LOCAL=${LOCAL:-0}; SB=${SB:-64}; SMALL=${SMALL:-small}; MIN_AE=${MIN_AE:-100}; MIN_DYN=${MIN_DYN:-200}

if [ "$LOCAL" = 0 ]; then
  SITE=/tmp/site; rm -rf $SITE; mkdir -p $SITE/worldsim
  cp -r .gpu/site/* $SITE/
  cp -r worldsim/* $SITE/worldsim/; cp -r envs $SITE/worldsim/envs; cp -r evals $SITE/worldsim/evals
  cp -r configs $SITE/worldsim/configs
  export PYTHONPATH=$SITE
  nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv
fi
export PYTHONSAFEPATH=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
ws() { python3 -m worldsim.cli "$@"; }
python3 -c "import torch, lightning, gymnasium, hydra, pybullet, worldsim, cv2; import gymnasium as g, worldsim.evals.run, worldsim.training.train, worldsim.bench; e = g.make('worldsim/Push-v0'); e.reset(seed=0); e.close(); print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '', 'lightning', lightning.__version__, 'worldsim', worldsim.__file__)" || exit 1
el setup

pack() {  # results so far, small files only
  tar czf "$OUT/results.tgz" -C "$W" --exclude='*.ckpt' --exclude='*.pt' --exclude='data*' --exclude='*latent*' \
      --exclude='tensorboard' . 2>/dev/null
}

ws collect env=worldsim/Physics-v0 policy=scripted episodes=$EPISODES workers=$CWORKERS seed=11 out=$W/data-physics progress=false > $W/collect-physics.log 2>&1 &
ws collect env=worldsim/Push-v0 policy=mixed episodes=$EPISODES workers=$CWORKERS seed=11 out=$W/data-push progress=false > $W/collect-push.log 2>&1 &
wait; tail -n1 $W/collect-*.log; el collected

# name world preset clip batch lr ae_batch
RUNS=("small-physics physics $SMALL 16 $SB 5e-4 128" "small-push push $SMALL 16 $SB 5e-4 128"
      "tiny-physics physics tiny 8 64 1e-3 64" "tiny-push push tiny 8 64 1e-3 64")

train_run() {  # out ae_steps dyn_steps val_every world preset clip batch lr ae_batch [extra...]
  local out=$1 ae=$2 dyn=$3 val=$4 world=$5 preset=$6 clip=$7 batch=$8 lr=$9 aeb=${10}; shift 10
  ws train data=$W/data-$world out=$out model=$preset ae.max_steps=$ae ae.batch_size=$aeb \
     trainer.max_steps=$dyn optim.lr=$lr optim.warmup_steps=$(( dyn / 20 + 10 )) \
     dynamics.clip_length=$clip dynamics_data.batch_size=$batch trainer.val_every_n_steps=$val \
     trainer.checkpoint_every_n_steps=$val trainer.log_every_n_steps=10 trainer.progress_bar=false \
     export_dtype=float16 "$@"
}

for r in "${RUNS[@]}"; do set -- $r
  train_run $W/probe-$1 $PROBE $PROBE $PROBE $2 $3 $4 $5 $6 $7 > $W/probe-$1.log 2>&1 &
done; wait; el probed

rate() {  # last batches/s logged by a stage's ThroughputMonitor
  python3 - "$1" <<'EOF'
import csv, glob, sys
rows = [r for f in sorted(glob.glob(sys.argv[1] + "/csv/version_*/metrics.csv")) for r in csv.DictReader(open(f))
        if r.get("train/device/batches_per_sec")]
print(float(rows[-1]["train/device/batches_per_sec"]) if rows else 0)
EOF
}
# One step count per preset, from the mean rate of its two worlds: a probe that overlapped the
# others' start-up (latent caching) read slow once and would have cut that run short.
for r in "${RUNS[@]}"; do set -- $r
  echo "$1: probe autoencoder $(rate $W/probe-$1/autoencoder) batches/s, dynamics $(rate $W/probe-$1/dynamics)"
  tail -n 3 $W/probe-$1.log | head -n 1
done
for preset in small tiny; do
  ae_rate=$(python3 -c "print(($(rate $W/probe-$preset-physics/autoencoder) + $(rate $W/probe-$preset-push/autoencoder)) / 2)")
  dyn_rate=$(python3 -c "print(($(rate $W/probe-$preset-physics/dynamics) + $(rate $W/probe-$preset-push/dynamics)) / 2)")
  ae=$(python3 -c "print(max($MIN_AE, int($ae_rate * $AE_S) // 50 * 50))")
  dyn=$(python3 -c "print(max($MIN_DYN, int($dyn_rate * $DYN_S) // 100 * 100))")
  echo "$preset: $ae autoencoder steps, $dyn dynamics steps"
  eval "AE_$preset=$ae; DYN_$preset=$dyn"
done
rm -rf $W/probe-*/autoencoder/checkpoints $W/probe-*/dynamics/checkpoints
pack; el planned

for r in "${RUNS[@]}"; do set -- $r; eval "ae=\$AE_${1%%-*}; dyn=\$DYN_${1%%-*}"  # small-push -> small
  ( train_run $W/$1 $ae $dyn $(( dyn / 2 )) $2 $3 $4 $5 $6 $7 ) > $W/train-$1.log 2>&1 &
done; wait; el trained
for r in "${RUNS[@]}"; do set -- $r; grep -E "Error|error|parameters" $W/train-$1.log | head -4; done
nvidia-smi --query-gpu=memory.used --format=csv 2>/dev/null
mkdir -p $W/small $W/tiny
for w in physics push; do cp $W/small-$w/model.pt $W/small/$w.pt; cp $W/tiny-$w/model.pt $W/tiny/$w.pt; done
tar cf "$OUT/tiny-models.tar" -C $W tiny; pack; el exported

ws eval checkpoint=$W/small predictors=[model,reference,copy_last] suites=[rollout,conditioning] n=$NEVAL split=[id] \
   anchors=false progress=false out=$W/eval-small > $W/eval-small.log 2>&1 &
ws eval checkpoint=$W/tiny predictors=[model] suites=[rollout,conditioning] n=$NEVAL split=[id] \
   anchors=false progress=false out=$W/eval-tiny > $W/eval-tiny.log 2>&1 &
wait; tail -n 30 $W/eval-small/summary.md; pack; el evaluated

# Clean throughput and MFU of the small DiT alone (same data, same trained autoencoder).
train_run $W/mfu-small 0 $MFU_STEPS $MFU_STEPS physics $SMALL 16 $SB 5e-4 128 stage=dynamics \
   autoencoder=$W/small-physics/autoencoder.pt trainer.log_every_n_steps=25 > $W/mfu-small.log 2>&1
echo "mfu-small: $(rate $W/mfu-small/dynamics) batches/s"; pack; el mfu

ws bench suites=[env] env.checkpoint=$W/small/push.pt env.seconds=$BENCH_S env.memory_steps=$MEMSTEPS out=$W/bench-small.json > $W/bench-small.log 2>&1
ws bench suites=[env] env.seconds=$BENCH_S env.memory_steps=$MEMSTEPS out=$W/bench-tiny.json > $W/bench-tiny.log 2>&1
pack; el benched
