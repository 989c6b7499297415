#!/usr/bin/env bash
# The CPU runs behind the README's collaborative-filtering results (2-core CPU, about 110 minutes).
# The Gowalla anchor runs (LightGCN on a GPU, BPR-MF about an hour on this CPU) and the ML-1M LightGCN quality
# runs (GPU) have their commands in the README.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
R=benchmarks/results
mkdir -p $R

# 1. Peer: ours vs RecBole 1.2.1 on exactly the same ML-100K leave-one-out files, three seeds.
[ -n "${SKIP_PEER:-}" ] || \
$PY benchmarks/cf.py --dataset ml-100k --split loo --models bpr lightgcn --seeds 0 1 2 --peer recbole \
    --epochs 100 --patience 10 --lr 0.005 --out $R/cf_ml-100k_loo_peer.json

# 2. ML-1M, leave-one-out by time and a global 80/10/10 temporal split: the five models side by side.
for split in loo temporal; do
    [ -n "${SKIP_ML1M_LOO_BASIC:-}" ] && [ $split = loo ] || \
    $PY benchmarks/cf.py --dataset ml-1m --split $split --models pop ease bpr --seeds 0 1 2 \
        --epochs 100 --batch-size 4096 --lr 0.005 --eval-every 2 --patience 5 --out $R/cf_ml-1m_${split}_cpu.json
    # NeuMF scores every (user, item) pair through its MLP: ~0.2 TFLOP per full ranking of ML-1M, so it is
    # validated every 5 epochs and capped at 10 epochs here
    $PY benchmarks/cf.py --dataset ml-1m --split $split --models neumf --seeds 0 \
        --epochs 10 --batch-size 2048 --lr 0.001 --eval-every 5 --patience 1 --out $R/cf_ml-1m_${split}_neumf_cpu.json
    # LightGCN on this CPU: seconds per epoch and evaluation throughput only (quality runs: GPU, README)
    $PY benchmarks/cf.py --dataset ml-1m --split $split --models lightgcn --seeds 0 \
        --epochs 2 --batch-size 4096 --lr 0.005 --patience 0 --out $R/cf_ml-1m_${split}_lightgcn_cpu_timing.json
done

# 3. Speed on a quiet machine (run nothing else meanwhile): three epochs of every model on ML-1M beside
#    RecBole, and one epoch on Gowalla (EASE left out there: its 40,981-item solve needs more memory).
$PY benchmarks/cf.py --dataset ml-1m --split loo --models pop ease bpr neumf lightgcn --seeds 0 --epochs 3 --patience 0 \
    --eval-every 3 --batch-size 4096 --lr 0.005 --peer recbole --out $R/cf_ml-1m_loo_timing_cpu.json
$PY benchmarks/cf.py --dataset gowalla --split given --models bpr lightgcn --seeds 0 --epochs 1 \
    --option sample_by=user --out $R/cf_gowalla_timing_cpu.json
$PY benchmarks/cf.py --dataset gowalla --split given --models pop neumf --seeds 0 --epochs 1 --threads 2 \
    --out $R/cf_gowalla_timing_cpu_pop_neumf.json
