#!/bin/bash
# #14 int16x8 with the shipped default (min/max ranges), both students, nearest and GPTQ (twelfth sitting)
cd /work/main
for s in full quick; do
  M=/work/runs/full/s42/student/model; [ $s = quick ] && M=/work/runs/demo-q/student/model
  for wr in nearest gptq; do
    /usr/bin/time -v tinybert-edge export --model $M --format tflite --quantize int16x8 --data /root/.cache/tinybert-edge/data/rotten_tomatoes/dev.tsv \
      --calibration-data /root/.cache/tinybert-edge/data/rotten_tomatoes/train.tsv --weight-rounding $wr --out /work/runs/final/$s-$wr > /work/runs/final/$s-$wr.log 2>&1
    echo "$s $wr rc=$?" >> /work/runs/final/all.log
  done
done
