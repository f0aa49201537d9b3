#!/usr/bin/env bash
# PPO in imagination on the GPU, after fine-tuning the Push reference on drives it never saw in
# training (the fourth session's version, at commit f392855, fine-tuned only the reward and
# termination heads; TRAINABLE=heads repeats it). This, the fifth session's plan:
#   1. record Push with the pusher starting behind the target, driven by held random actions and
#      scripted segments (policy=sticky);
#   2. fine-tune the whole dynamics of the shipped reference on it (TRAINABLE=all; the autoencoder,
#      and so the latents the policies observe, stay the reference's): heads alone left the imagined
#      pusher drifting 14-19 px on straight drives (benchmarks/reward_calibration.py);
#   3. train PPO in imagination with the tuned model for TIMESTEPS, SEEDS side by side (the GPU is
#      far from busy with one), each cut at MAX_S seconds. The real-env rows of the same seeds and
#      budget run on the CPU at no device cost; REAL=1 runs them there instead, REAL_STEPS each, one
#      process per env (real_vec=subproc) on the 16 cores.
#   4. DYNA=1 (untried on the GPU): after step 3, record DYNA_EPISODES real episodes of each seed's
#      agent (20% random steps), fine-tune the tuned model on them, and train PPO on from that agent
#      in it for TIMESTEPS more; give it half the budget (TIMESTEPS=31744) to keep the real rows'.
# Sends back the tuned model in $OUT/tuned.pt.part-* (join with cat) and the rest in $OUT/results.tgz.
#   device run: bash benchmarks/gpu_imagine.sh 2>&1 | tee $OUT/log.txt   (carry .gpu; timeout 570)
#   CPU dry run: LOCAL=1 DEVICE=cpu TRAINER=cpu EPISODES=4 CWORKERS=1 FT_STEPS=2 FT_TIME=00:00:01:00 MAX_S=8 \
#                SEEDS="0 1" EXTRA="n_envs=2 ppo.n_steps=16 ppo.batch_size=16 eval_episodes=2" W=/tmp/idry \
#                OUT=/tmp/idry-out bash benchmarks/gpu_imagine.sh
#                (step 4 too: add DYNA=1 DYNA_EPISODES=2 DYNA_FT_STEPS=2 and SEEDS=0; 5 min 18 s on 2 cores)
set -u
START=$(date +%s)
el() { echo "[$(( $(date +%s) - START ))s] $*"; }
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
W=${W:-/tmp/w}; mkdir -p "$W"
TIMESTEPS=${TIMESTEPS:-63488}; HORIZON=${HORIZON:-48}; DEVICE=${DEVICE:-cuda}; MAX_S=${MAX_S:-300}
LIMIT=${LIMIT:-330}; EXTRA=${EXTRA:-}; SEEDS=${SEEDS:-0 1 2 3}; TUNE=${TUNE:-1}; TRAINER=${TRAINER:-gpu}
EPISODES=${EPISODES:-1024}; CWORKERS=${CWORKERS:-14}; FT_STEPS=${FT_STEPS:-400}; FT_TIME=${FT_TIME:-00:00:02:15}
FT_LR=${FT_LR:-5e-4}; TRAINABLE=${TRAINABLE:-all}; REAL=${REAL:-0}; REAL_STEPS=${REAL_STEPS:-63488}; REAL_ENVS=${REAL_ENVS:-16}
DYNA=${DYNA:-0}; DYNA_EPISODES=${DYNA_EPISODES:-256}; DYNA_FT_STEPS=${DYNA_FT_STEPS:-150}; DYNA_FT_TIME=${DYNA_FT_TIME:-00:00:01:30}
source benchmarks/gpu_common.sh
python3 -c "import torch, stable_baselines3, worldsim.imagine; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'sb3', stable_baselines3.__version__)" || exit 1
el setup
MODEL=$REF/push.pt
if [ "$TUNE" = 1 ]; then
  ws collect env=worldsim/Push-v0 +env_kwargs.start=behind policy=sticky episodes=$EPISODES max_steps=64 \
     workers=$CWORKERS seed=21 out=$W/data-sticky progress=false > $W/collect.log 2>&1; tail -n 1 $W/collect.log
  el collected
  ws train stage=dynamics init=$MODEL data=$W/data-sticky out=$W/tuned trainer=$TRAINER dynamics.trainable=$TRAINABLE \
     dynamics.flow.rollout_prob=0.5 trainer.max_steps=$FT_STEPS trainer.max_time=$FT_TIME optim.lr=$FT_LR \
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
if [ "$DYNA" = 1 ]; then  # 4. each seed's agent recorded in the real env, the model fine-tuned on it, PPO on from the agent
  el "first half imagined"
  for seed in $SEEDS; do
    ws collect env=worldsim/Push-v0 +env_kwargs.start=behind policy=worldsim.imagine:SavedPPOPolicy \
       +policy_kwargs.path=$W/imagine-s$seed/ppo_imagination.zip +policy_kwargs.checkpoint=$MODEL \
       +policy_kwargs.random_prob=0.2 episodes=$DYNA_EPISODES max_steps=$HORIZON workers=3 seed=$((31 + seed)) \
       out=$W/data-agent-s$seed progress=false > $W/collect-agent-s$seed.log 2>&1 &
  done
  wait; tail -q -n 1 $W/collect-agent-s*.log; el "agents recorded"
  for seed in $SEEDS; do
    ws train stage=dynamics init=$MODEL data=$W/data-agent-s$seed out=$W/tuned-s$seed trainer=$TRAINER \
       dynamics.flow.rollout_prob=0.5 trainer.max_steps=$DYNA_FT_STEPS trainer.max_time=$DYNA_FT_TIME optim.lr=$FT_LR optim.warmup_steps=20 \
       dynamics_data.batch_size=64 trainer.val_every_n_steps=$DYNA_FT_STEPS trainer.checkpoint_every_n_steps=$DYNA_FT_STEPS \
       trainer.log_every_n_steps=10 trainer.progress_bar=false export_dtype=float16 > $W/tune-s$seed.log 2>&1 &
  done
  wait; el "models tuned on the agents"
  for seed in $SEEDS; do
    timeout $LIMIT python3 -m worldsim.cli imagine checkpoint=$W/tuned-s$seed/model.pt timesteps=$TIMESTEPS n_envs=16 \
       init_policy=$W/imagine-s$seed/ppo_imagination.zip eval_episodes=32 horizon=$HORIZON +env_kwargs.start=behind \
       policies=[imagination] device=$DEVICE threads=2 seed=$seed max_seconds=$MAX_S verbose=1 out=$W/dyna-s$seed \
       $EXTRA > $W/dyna-s$seed.log 2>&1 &
  done
  wait
fi
for seed in $SEEDS; do
  for run in imagine dyna real; do
    [ -d $W/$run-s$seed ] || continue
    echo "$run, seed $seed:"; cat $W/$run-s$seed/imagine.md 2>/dev/null; rm -rf $W/$run-s$seed/hydra  # the policies (ppo_*.zip) go back too
  done
done
el imagined
tar czf $OUT/results.tgz -C $W --exclude='*.ckpt' --exclude='*.pt' --exclude='data*' --exclude='*latent*' \
    --exclude='tensorboard' . 2>/dev/null
el packed
