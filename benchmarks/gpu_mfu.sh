#!/usr/bin/env bash
# Where the small DiT's training step goes on a GPU: the same 150 steps (batch 64 of 16-frame
# clips, bf16-mixed) with the latent clips loaded in the main process (the default) or by 4
# DataLoader workers, eager and compiled. Runs on the shipped Physics autoencoder's latents of a
# fresh 256-episode recording, so it needs no trained model. Prints clips/s and MFU per variant.
#   device run: bash benchmarks/gpu_mfu.sh 2>&1 | tee $OUT/log.txt   (carry .gpu, timeout 200)
#   CPU dry run: LOCAL=1 EPISODES=4 STEPS=6 SB=2 W=/tmp/mdry bash benchmarks/gpu_mfu.sh
set -u
START=$(date +%s)
el() { echo "[$(( $(date +%s) - START ))s] $*"; }
W=${W:-/tmp/w}; mkdir -p "$W"
EPISODES=${EPISODES:-256}; STEPS=${STEPS:-150}; SB=${SB:-64}
source benchmarks/gpu_common.sh
ws collect env=worldsim/Physics-v0 policy=scripted episodes=$EPISODES workers=7 seed=11 out=$W/data progress=false | tail -n 1
el collected
for variant in "workers0 dynamics_data.num_workers=0" "workers4 dynamics_data.num_workers=4" \
               "workers4-compiled dynamics_data.num_workers=4 trainer.compile=true"; do
  set -- $variant; name=$1; shift
  timeout 60 python3 -m worldsim.cli train data=$W/data out=$W/$name stage=dynamics autoencoder=$REF/physics.pt \
     model=small trainer.max_steps=$STEPS trainer.val_every_n_steps=$STEPS trainer.checkpoint_every_n_steps=$STEPS \
     dynamics.clip_length=16 dynamics_data.batch_size=$SB trainer.log_every_n_steps=25 trainer.progress_bar=false \
     "$@" > $W/$name.log 2>&1
  rc=$?; echo "$name (rc $rc): $(logged $W/$name/dynamics train/device/samples_per_sec) clips/s, mfu $(logged $W/$name/dynamics train/device/mfu)"; el $name
done
