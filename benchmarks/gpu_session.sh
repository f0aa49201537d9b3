#!/usr/bin/env bash
# One lent-GPU session in one call (see benchmarks/README.md). Second session's plan:
#   1. record Physics and Push (1,024 episodes each);
#   2. train three models at once on the one GPU:
#      - small Physics (small autoencoder + 20.8M DiT), longer than the first session's 900 steps,
#        to see whether horizon 1 on Physics is a matter of training;
#      - "mid" Physics and Push: a 7.8M-parameter DiT (width 256, depth 5) on the shipped tiny
#        autoencoder of its world, 18.5 MB in float16: a GPU-trained model under the repository's
#        20 MB budget for a shipped file;
#   3. evaluate them beside the shipped references and copy-last (rollout, conditioning,
#      reconstruction for small);
#   4. measure the small DiT's throughput and MFU alone with trainer.compile=true.
# Step counts are fixed from the first session's measured rates (no probes: they cost 52 s there).
# Results land in $OUT/results.tgz after each phase; the mid models in $OUT/mid-models.tar.part-*
# (a file coming back may hold 16 MiB; join with cat).
#   device run: bash benchmarks/gpu_session.sh 2>&1 | tee $OUT/log.txt   (carry .gpu, timeout 570)
#   CPU dry run: LOCAL=1 EPISODES=6 CWORKERS=1 SB=2 AE_SMALL=20 DYN_SMALL=20 DYN_MID=20 NEVAL=2 \
#                MFU_STEPS=10 MID_WIDTH=32 SMALL_OVERRIDES="'+dynamics.dit={width:32,depth:1,heads:2}'" \
#                W=/tmp/gdry OUT=/tmp/gdry-out bash benchmarks/gpu_session.sh
set -u
START=$(date +%s)
el() { echo "[$(( $(date +%s) - START ))s] $*"; }
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
W=${W:-/tmp/w}; mkdir -p "$W"
EPISODES=${EPISODES:-1024}; CWORKERS=${CWORKERS:-7}; SB=${SB:-64}
AE_SMALL=${AE_SMALL:-400}; DYN_SMALL=${DYN_SMALL:-1700}; DYN_MID=${DYN_MID:-2500}
NEVAL=${NEVAL:-64}; MFU_STEPS=${MFU_STEPS:-150}; MFU_TIMEOUT=${MFU_TIMEOUT:-80}
MID_WIDTH=${MID_WIDTH:-256}; SMALL_OVERRIDES=${SMALL_OVERRIDES:-}
source benchmarks/gpu_common.sh
python3 -c "import torch, lightning, gymnasium, hydra, pybullet, worldsim, cv2; import gymnasium as g, worldsim.evals.run, worldsim.training.train; e = g.make('worldsim/Push-v0'); e.reset(seed=0); e.close(); print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '', 'lightning', lightning.__version__, 'worldsim', worldsim.__file__)" || exit 1
el setup

pack() {  # results so far, small files only
  tar czf "$OUT/results.tgz" -C "$W" --exclude='*.ckpt' --exclude='*.pt' --exclude='data*' --exclude='*latent*' \
      --exclude='tensorboard' . 2>/dev/null
}

ws collect env=worldsim/Physics-v0 policy=scripted episodes=$EPISODES workers=$CWORKERS seed=11 out=$W/data-physics progress=false > $W/collect-physics.log 2>&1 &
ws collect env=worldsim/Push-v0 policy=mixed episodes=$EPISODES workers=$CWORKERS seed=11 out=$W/data-push progress=false > $W/collect-push.log 2>&1 &
wait; tail -n1 $W/collect-*.log; el collected

COMMON="dynamics.clip_length=16 dynamics_data.batch_size=$SB optim.lr=5e-4 trainer.log_every_n_steps=10 \
trainer.progress_bar=false export_dtype=float16"
MID="model=small '+dynamics.dit={width:$MID_WIDTH,depth:5,heads:4,text_width:128,head_width:128}'"
( eval ws train data=$W/data-physics out=$W/small-physics model=small ae.max_steps=$AE_SMALL ae.batch_size=128 \
     trainer.max_steps=$DYN_SMALL optim.warmup_steps=$(( DYN_SMALL / 20 + 10 )) \
     trainer.val_every_n_steps=$DYN_SMALL trainer.checkpoint_every_n_steps=$DYN_SMALL $COMMON $SMALL_OVERRIDES ) \
  > $W/train-small-physics.log 2>&1 &
for world in physics push; do
  ( eval ws train data=$W/data-$world out=$W/mid-$world stage=dynamics autoencoder=$REF/$world.pt $MID \
       trainer.max_steps=$DYN_MID optim.warmup_steps=$(( DYN_MID / 20 + 10 )) \
       trainer.val_every_n_steps=$DYN_MID trainer.checkpoint_every_n_steps=$DYN_MID $COMMON ) \
    > $W/train-mid-$world.log 2>&1 &
done
wait; el trained
for run in small-physics mid-physics mid-push; do
  echo "$run: dynamics $(logged $W/$run/dynamics train/device/batches_per_sec) batches/s"; grep -E "Error|error|parameters" $W/train-$run.log | head -4
done
nvidia-smi --query-gpu=memory.used --format=csv 2>/dev/null
mkdir -p $W/small $W/mid
cp $W/small-physics/model.pt $W/small/physics.pt
for w in physics push; do cp $W/mid-$w/model.pt $W/mid/$w.pt; done
ls -l $W/mid
tar cf - -C $W mid | split -b 15M - "$OUT/mid-models.tar.part-"; pack; el exported

ws eval checkpoint=$W/mid predictors=[model,reference,copy_last] suites=[rollout,conditioning] n=$NEVAL split=[id] \
   anchors=false progress=false out=$W/eval-mid > $W/eval-mid.log 2>&1 &
ws eval checkpoint=$W/small predictors=[model] suites=[rollout,reconstruction] n=$NEVAL split=[id] \
   anchors=false progress=false out=$W/eval-small > $W/eval-small.log 2>&1 &
wait; tail -n 40 $W/eval-mid/summary.md; tail -n 25 $W/eval-small/summary.md; pack; el evaluated

# The small DiT alone, compiled (the first session measured it eager: 664 clips/s, MFU 7.4%).
( eval timeout $MFU_TIMEOUT python3 -m worldsim.cli train data=$W/data-physics out=$W/mfu-small stage=dynamics \
     autoencoder=$W/small-physics/autoencoder.pt model=small trainer.max_steps=$MFU_STEPS \
     trainer.val_every_n_steps=$MFU_STEPS trainer.checkpoint_every_n_steps=$MFU_STEPS trainer.compile=true \
     $COMMON trainer.log_every_n_steps=25 $SMALL_OVERRIDES ) > $W/mfu-small.log 2>&1
rc=$?; echo "mfu-small compiled: $(logged $W/mfu-small/dynamics train/device/batches_per_sec) batches/s (rc $rc)"; tail -n 3 $W/mfu-small.log; pack; el mfu
