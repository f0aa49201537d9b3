# Issue 25 on one GPU in one call of about 9 minutes: occlusion_memory_gpu with its bank of 8
# frames and its slots=0 twin, trained side by side on the one GPU for the same time (equal
# compute), then the permanence suite on both, on the memory model with its bank off, and on
# copy-last and the truth. The two model files come back in keep.tar.part-*.
#
#   DRY_RUN=1 bash benchmarks/gpu_run.sh benchmarks/gpu_memory_plan.sh   # here, on the CPU, tiny sizes
#   bash benchmarks/gpu_run.sh benchmarks/gpu_memory_plan.sh             # on the device, carry [".gpu"]
#
# The recipe is sized for 30 minutes (6,000 steps); one call allows about 5, so STEPS shortens the
# learning-rate schedule to what two runs sharing the GPU can reach, and trainer.max_time guards it.
STEPS=${STEPS:-1500}
EPISODES=${EPISODES:-1024}
N=${N:-16}
EVAL_S=${EVAL_S:-120}
CACHE_S=${CACHE_S:-30}
SIZES=($DRY_SIZES)
if [ "$DRY_RUN" = 1 ]; then STEPS=2; EPISODES=8; N=2; EVAL_S=90; fi
el "record the Occlusion episodes, as the recipe records them"
ws collect env=worldsim/Occlusion-v0 policy=mixed episodes=$EPISODES seed=3 workers=$WORKERS \
    out=$W/data-occlusion progress=false > $W/collect.log 2>&1
el "recorded: exit $?"; tail -n 1 $W/collect.log
TRAIN_S=$(( $(left) - EVAL_S - CACHE_S ))
el "train memory on and off side by side, $STEPS steps or $TRAIN_S s each"
for arm in on off; do
  slots=$([ $arm = on ] && echo 8 || echo 0)
  ws train experiment=occlusion_memory_gpu data=$W/data-occlusion out=$W/$arm collect.episodes=$EPISODES \
      dynamics.memory.slots=$slots trainer.max_steps=$STEPS trainer.max_time=$(max_time $TRAIN_S) "${SIZES[@]}" > $W/train-$arm.log 2>&1 &
done
wait
for arm in on off; do
  el "$arm: $(logged $W/$arm/dynamics train/device/samples_per_sec) clips/s, val loss $(logged $W/$arm/dynamics val/loss)"
done
E="suites=[permanence] n=$N split=[id,ood] anchors=false progress=false"
ws eval checkpoint=$W/on/model.pt predictors=[model,copy_last,truth] $E out=$W/eval-on > $W/eval-on.log 2>&1
el "eval memory on: exit $?"
ws eval checkpoint=$W/on/model.pt predictors=[model] sampling.memory=false $E out=$W/eval-bank-off > $W/eval-bank-off.log 2>&1
el "eval bank off: exit $?"
ws eval checkpoint=$W/off/model.pt predictors=[model] $E out=$W/eval-off > $W/eval-off.log 2>&1
el "eval trained without memory: exit $?"
