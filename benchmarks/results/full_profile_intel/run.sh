#!/bin/bash
# Full profile, 3 seeds, Intel AMX (eleventh sitting). s42 via the demo; s43/s44 from s42's teacher.
set -u
cd /work/main
R=/work/runs/full
/usr/bin/time -v tinybert-edge demo --profile full --seed 42 --out $R/s42 --resume > $R/s42.log 2>&1
echo "s42 rc=$?" >> $R/all.log
RT=/root/.cache/tinybert-edge/data/rotten_tomatoes
echo "RT=$RT" >> $R/all.log
for s in 43 44; do
  start=$(date +%s)
  tinybert-edge distill task --teacher $R/s42/teacher/model --init sliced --train $RT/train.tsv --dev $RT/dev.tsv \
    --out $R/s$s/student --intermediate-epochs 4 --intermediate-lr 2e-4 --prediction-epochs 8 --prediction-lr 1e-4 \
    --max-seq-len 64 --batch-size 32 --seed $s --mixed-precision bf16 --resume > $R/s$s.log 2>&1
  echo "s$s distill rc=$? wall=$(( $(date +%s)-start ))s" >> $R/all.log
  for sp in dev test; do
    tinybert-edge evaluate --model $R/s$s/student/model --data $RT/$sp.tsv --max-seq-len 64 --json $R/s$s/$sp.json >> $R/s$s.log 2>&1
  done
  echo "s$s eval done" >> $R/all.log
done
