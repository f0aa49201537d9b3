# Issue 23's GPU figures in one call of about 9 minutes: training MFU per preset, the batch-1 and
# batched env step of the Push reference, and the real Push env on every CPU core of the machine.
#
#   bash benchmarks/gpu_prepare.sh                                   # here, once
#   DRY_RUN=1 bash benchmarks/gpu_run.sh benchmarks/gpu_speed_plan.sh  # here, on the CPU, tiny sizes
#   bash benchmarks/gpu_run.sh benchmarks/gpu_speed_plan.sh          # on the device, carry [".gpu"]
#
# Each bench prints one JSON object; `el` stamps the seconds. Sizes shrink in a dry run.
PRESETS=${PRESETS:-[small,base]}
BATCH=${BATCH:-64}
STEPS=${STEPS:-20}
ENV_BATCHES=${ENV_BATCHES:-[1,16,256,1024]}
ENV_SECONDS=${ENV_SECONDS:-3}
MEMORY_STEPS=${MEMORY_STEPS:-2000}
CORES=$(nproc)
if [ "$DRY_RUN" = 1 ]; then PRESETS=[tiny]; BATCH=2; STEPS=1; ENV_BATCHES=[1,4]; ENV_SECONDS=0.2; MEMORY_STEPS=5; CORES=2; fi

el "training throughput and MFU: eager and compiled, fused AdamW, bf16-mixed"
ws bench suites=[train] train.presets=$PRESETS train.compile=[false,true] train.dynamics_batch=$BATCH \
    train.autoencoder_batch=$((BATCH * 4)) train.steps=$STEPS out=$W/bench-train.json

el "env step of the Push reference: batch 1 (latency) to 1024 (throughput)"
ws bench suites=[env] env.checkpoint=$REF/push.pt env.batch_sizes=$ENV_BATCHES env.seconds=$ENV_SECONDS \
    env.contexts=[8] env.memory_steps=$MEMORY_STEPS out=$W/bench-env.json

el "the real Push env on all $CORES cores, for the vector env's comparison"
ws bench suites=[collect] collect.worlds=[worldsim/Push-v0] collect.workers=[$CORES] \
    collect.episodes=$((CORES * 8)) out=$W/bench-collect.json
el "done"
