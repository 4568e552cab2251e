#!/bin/bash
# #14 int16x8 with the LayerNorm rewrite (outlier channels + piecewise rsqrt), both students,
# nearest and GPTQ, default buckets, all 1,250 dev rows (thirteenth sitting)
cd /work/main
RT=/root/.cache/tinybert-edge/data/rotten_tomatoes
for s in quick full; do
  M=/work/runs/full/s42/student/model; [ $s = quick ] && M=/work/runs/demo-q/student/model
  for wr in nearest gptq; do
    /usr/bin/time -v tinybert-edge export --model $M --format tflite --quantize int16x8 --data $RT/dev.tsv \
      --calibration-data $RT/train.tsv --weight-rounding $wr --out /work/runs/ln/$s-$wr > /work/runs/ln/$s-$wr.log 2>&1
    echo "$s $wr rc=$? $(date -u +%H:%M:%S)" >> /work/runs/ln/all.log
  done
done
