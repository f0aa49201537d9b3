#!/usr/bin/env bash
# Fourth session's plan: PPO in imagination on the GPU, after the Push reference's reward and
# termination heads are fine-tuned on drives a trained agent makes. The first call of the session
# (this script's previous version, TUNE=0) trained PPO in the shipped reference: its reward head paid
# for straight drives that move nothing, and the policy failed in the real env (TUNE=0 MAX_S=330
# LIMIT=450 repeats that call). Here:
#   1. record Push with the pusher starting behind the target, driven by held random actions and
#      scripted segments (policy=sticky);
#   2. fine-tune only the heads of the shipped reference on it (frames stay exactly the reference's);
#   3. train PPO in imagination with the tuned model, seeds 0 and 1 side by side (the GPU is far from
#      busy with one), each cut at MAX_S seconds; the real-env rows run on the CPU at no device cost.
# Knobs for the next session: TRAINABLE=all fine-tunes the whole dynamics, not only the heads (the
# imagined pusher drifts on straight drives: benchmarks/reward_calibration.py); REAL=1 also runs the
# real-env rows there, REAL_STEPS each, one process per env (real_vec=subproc) on the 16 cores.
# Sends back the tuned model in $OUT/tuned.pt.part-* (join with cat) and the rest in $OUT/results.tgz.
#   device run: bash benchmarks/gpu_imagine.sh 2>&1 | tee $OUT/log.txt   (carry .gpu; timeout 400)
#   CPU dry run: LOCAL=1 DEVICE=cpu TRAINER=cpu EPISODES=4 CWORKERS=1 FT_STEPS=2 FT_TIME=00:00:01:00 MAX_S=8 \
#                EXTRA="n_envs=2 ppo.n_steps=16 ppo.batch_size=16 eval_episodes=2" W=/tmp/idry OUT=/tmp/idry-out \
#                bash benchmarks/gpu_imagine.sh
set -u
START=$(date +%s)
el() { echo "[$(( $(date +%s) - START ))s] $*"; }
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
W=${W:-/tmp/w}; mkdir -p "$W"
TIMESTEPS=${TIMESTEPS:-262144}; HORIZON=${HORIZON:-48}; DEVICE=${DEVICE:-cuda}; MAX_S=${MAX_S:-170}
LIMIT=${LIMIT:-260}; EXTRA=${EXTRA:-}; SEEDS=${SEEDS:-0 1}; TUNE=${TUNE:-1}; TRAINER=${TRAINER:-gpu}
EPISODES=${EPISODES:-1024}; CWORKERS=${CWORKERS:-14}; FT_STEPS=${FT_STEPS:-1500}; FT_TIME=${FT_TIME:-00:00:01:30}
TRAINABLE=${TRAINABLE:-heads}; REAL=${REAL:-0}; REAL_STEPS=${REAL_STEPS:-63488}; REAL_ENVS=${REAL_ENVS:-16}
source benchmarks/gpu_common.sh
python3 -c "import torch, stable_baselines3, worldsim.imagine; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'sb3', stable_baselines3.__version__)" || exit 1
el setup
MODEL=$REF/push.pt
if [ "$TUNE" = 1 ]; then
  ws collect env=worldsim/Push-v0 +env_kwargs.start=behind policy=sticky episodes=$EPISODES max_steps=64 \
     workers=$CWORKERS seed=21 out=$W/data-sticky progress=false > $W/collect.log 2>&1; tail -n 1 $W/collect.log
  el collected
  ws train stage=dynamics init=$MODEL data=$W/data-sticky out=$W/tuned trainer=$TRAINER dynamics.trainable=$TRAINABLE \
     dynamics.flow.rollout_prob=0.5 trainer.max_steps=$FT_STEPS trainer.max_time=$FT_TIME optim.lr=1e-3 \
     optim.warmup_steps=50 dynamics_data.batch_size=64 trainer.val_every_n_steps=$FT_STEPS \
     trainer.checkpoint_every_n_steps=$FT_STEPS trainer.log_every_n_steps=10 trainer.progress_bar=false \
     export_dtype=float16 > $W/tune.log 2>&1
  echo "tune exit $?"; tail -n 5 $W/tune.log
  MODEL=$W/tuned/model.pt
  split -b 12m $MODEL $OUT/tuned.pt.part-
  el tuned
fi
if [ "$REAL" = 1 ]; then  # the same seeds in the real env, on the CPU cores beside the GPU runs
  for seed in $SEEDS; do
    timeout $LIMIT python3 -m worldsim.cli imagine checkpoint=$MODEL timesteps=$REAL_STEPS n_envs=$REAL_ENVS \
       eval_episodes=32 horizon=$HORIZON +env_kwargs.start=behind policies=[real,random,scripted] real_vec=subproc \
       device=cpu threads=1 seed=$seed out=$W/real-s$seed $EXTRA > $W/real-s$seed.log 2>&1 &
  done
fi
for seed in $SEEDS; do
  timeout $LIMIT python3 -m worldsim.cli imagine checkpoint=$MODEL timesteps=$TIMESTEPS n_envs=16 \
     eval_episodes=32 horizon=$HORIZON +env_kwargs.start=behind policies=[imagination] device=$DEVICE threads=2 \
     seed=$seed max_seconds=$MAX_S verbose=1 out=$W/imagine-s$seed $EXTRA > $W/imagine-s$seed.log 2>&1 &
done
wait
for seed in $SEEDS; do
  for run in imagine real; do
    [ -d $W/$run-s$seed ] || continue
    echo "$run, seed $seed:"; cat $W/$run-s$seed/imagine.md 2>/dev/null; rm -rf $W/$run-s$seed/hydra $W/$run-s$seed/*.zip
  done
done
el imagined
tar czf $OUT/results.tgz -C $W --exclude='*.ckpt' --exclude='*.pt' --exclude='data*' --exclude='*latent*' \
    --exclude='tensorboard' . 2>/dev/null
el packed
