#!/bin/bash
# #14 full-integer int16x8 through the exporter on the full-profile s42 student (twelfth sitting)
cd /work/main
M=/work/runs/full/s42/student/model
for wr in nearest gptq; do
  /usr/bin/time -v tinybert-edge export --model $M --format tflite --quantize int8,int16x8 --data /root/.cache/tinybert-edge/data/rotten_tomatoes/dev.tsv     --calibration-data /root/.cache/tinybert-edge/data/rotten_tomatoes/train.tsv --weight-rounding $wr --out /work/runs/fi/$wr > /work/runs/fi/$wr.log 2>&1
  echo "$wr rc=$?" >> /work/runs/fi/all.log
done
