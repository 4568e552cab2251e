#!/bin/bash
# #14 int16x8 on the quick-profile demo student (seed 42), and int8-static beside it (twelfth sitting)
cd /work/main
while ! grep -q "demo-q rc" /work/runs/fi/all.log; do sleep 10; done
M=/work/runs/demo-q/student/model
for wr in nearest gptq; do
  /usr/bin/time -v tinybert-edge export --model $M --format tflite --quantize int16x8 --data /root/.cache/tinybert-edge/data/rotten_tomatoes/dev.tsv \
    --calibration-data /root/.cache/tinybert-edge/data/rotten_tomatoes/train.tsv --weight-rounding $wr --out /work/runs/fiq/$wr > /work/runs/fiq/$wr.log 2>&1
  echo "$wr rc=$?" >> /work/runs/fiq/all.log
done
/usr/bin/time -v tinybert-edge export --model $M --format executorch --quantize int8-static --data /root/.cache/tinybert-edge/data/rotten_tomatoes/dev.tsv \
  --out /work/runs/fiq/static > /work/runs/fiq/static.log 2>&1
echo "static rc=$?" >> /work/runs/fiq/all.log
python -m tinybert_edge.benchmarks.arm_emulation --bundle /work/runs/fiq/gptq/student-tflite-int16x8-gptq-b32-64-128 \
  --data /root/.cache/tinybert-edge/data/rotten_tomatoes/dev.tsv --max-examples 16 --out /work/runs/fiq/arm > /work/runs/fiq/arm.log 2>&1
echo "arm rc=$?" >> /work/runs/fiq/all.log
