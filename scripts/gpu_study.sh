#!/usr/bin/env bash
# The GPU study on the GPU machine, resumable across device calls (README "The GPU study"):
#   bash scripts/gpu_study.sh 560     # run until 560 s have passed; a second call goes on from there
#   GPU_STUDY_ONLY="pt_bf16 pt_fp8" bash scripts/gpu_study.sh 560   # only these variants (optimize.only)
# carrying .whl, .whl-kedro, data/01_raw/gpu_study/{texts.csv,images,tokenizer}. Every step keeps
# what it finished (model folders, zoo cards, variants, measured cells), so a step cut off by the
# deadline resumes in the next call on the same (warm) machine. Logs and the report go to $OUT.
set -u
deadline=$((SECONDS + ${1:-560}))
out=${OUT:-bench/results}
source scripts/gpu_setup.sh || exit 1
export KEDRO_ENV=gpu PYTHONUNBUFFERED=1 COLUMNS=220
nvidia-smi --query-gpu=name,power.limit,driver_version --format=csv,noheader
python3 bench/gpu_study.py models >> "$out/models.log" 2>&1 || { tail -20 "$out/models.log"; exit 1; }
for pipeline in zoo optimize evaluate tradeoff; do
    left=$((deadline - SECONDS - 20))  # 20 s kept for the report
    if [ "$left" -le 0 ]; then echo "$pipeline: no time left"; break; fi
    params=()
    if [ "$pipeline" = optimize ] && [ -n "${GPU_STUDY_ONLY:-}" ]; then params=(--params "optimize.only=$GPU_STUDY_ONLY"); fi
    timeout "$left" python3 -m kedro run --pipeline="$pipeline" "${params[@]}" >> "$out/$pipeline.log" 2>&1
    echo "$pipeline: rc $? at ${SECONDS} s"
done
grep -hE "rror|not measured|floor" "$out"/evaluate.log | tail -8
python3 bench/gpu_study.py report --out "$out" 2>&1 | tail -3
