# Issue 26 on one GPU in one call of about 9 minutes: the `mid` DiT on rich captions read as words
# with the colour x shape pairs held out (experiment=physics_text_gpu), then the text suite on it
# at guidance 1, 3 and 6, ID and OOD (unseen pairs). The model file comes back in keep.tar.part-*.
#
#   DRY_RUN=1 bash benchmarks/gpu_run.sh benchmarks/gpu_text_plan.sh   # here, on the CPU, tiny sizes
#   bash benchmarks/gpu_run.sh benchmarks/gpu_text_plan.sh             # on the device, carry [".gpu"]
#
# The data is recorded first, so that training's trainer.max_time can stop it EVAL_S seconds (and
# CACHE_S for the latent cache) before the deadline and the evals always run.
EPISODES=${EPISODES:-2048}
N=${N:-48}
EVAL_S=${EVAL_S:-120}
CACHE_S=${CACHE_S:-30}
SIZES=($DRY_SIZES)
if [ "$DRY_RUN" = 1 ]; then EPISODES=8; N=2; EVAL_S=60; SIZES+=(trainer.max_steps=2); fi
el "record $EPISODES rich-caption episodes, as the recipe records them"
ws collect env=worldsim/Physics-v0 +env_kwargs.captions=rich +env_kwargs.holdout=combinations policy=scripted \
    episodes=$EPISODES seed=21 workers=$WORKERS out=$W/data-text progress=false > $W/collect.log 2>&1
el "recorded: exit $?"; tail -n 1 $W/collect.log
TRAIN_S=$(( $(left) - EVAL_S - CACHE_S ))
el "train physics_text_gpu for at most $TRAIN_S s"
ws train experiment=physics_text_gpu data=$W/data-text out=$W/text collect.episodes=$EPISODES \
    trainer.max_time=$(max_time $TRAIN_S) "${SIZES[@]}" > $W/train.log 2>&1
el "trained: exit $?, $(logged $W/text/dynamics train/device/samples_per_sec) clips/s, val loss $(logged $W/text/dynamics val/loss)"
tail -n 3 $W/train.log
for g in 1 3 6; do
  ws eval checkpoint=$W/text/model.pt predictors=[model] suites=[text] n=$N split=[id,ood] anchors=false \
      progress=false sampling.cfg_text=$g out=$W/eval-cfg$g > $W/eval-cfg$g.log 2>&1
  el "eval cfg_text=$g: exit $?"
done
