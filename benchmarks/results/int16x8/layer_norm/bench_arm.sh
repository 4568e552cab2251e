#!/bin/bash
# speed of the rewritten int16x8 bundle vs the previous one and dynamic int8 (quick s42), then emulated aarch64
cd /work/main
# copies under distinct names (bench names rows by directory): /work/runs/ln/cmp/quick-{int8-dynamic,
# int16x8-before,int16x8-layernorm}-b32-64-128 = the demo's int8 bundle, runs/final/quick-nearest's and runs/ln/quick-nearest's
tinybert-edge bench --student /work/runs/ln/cmp/quick-int8-dynamic-b32-64-128 /work/runs/ln/cmp/quick-int16x8-before-b32-64-128 \
    /work/runs/ln/cmp/quick-int16x8-layernorm-b32-64-128 --allow-failed --no-bert-base --workloads fixed,real \
    --data /root/.cache/tinybert-edge/data/rotten_tomatoes/dev.tsv --max-examples 300 --runs 50 --out benchmarks/results/int16x8/layer_norm/bench > /work/runs/ln/bench.log 2>&1
echo "bench rc=$? $(date -u +%H:%M:%S)" >> /work/runs/ln/all.log
python -m benchmarks.arm_emulation --bundle /work/runs/ln/quick-nearest/student-tflite-int16x8-b32-64-128 \
    --bundle /work/runs/ln/full-gptq/student-tflite-int16x8-gptq-b32-64-128 --data /root/.cache/tinybert-edge/data/rotten_tomatoes/dev.tsv --max-examples 16 \
    --out benchmarks/results/int16x8/layer_norm/arm > /work/runs/ln/arm.log 2>&1
echo "arm rc=$? $(date -u +%H:%M:%S)" >> /work/runs/ln/all.log
