# Kedro + MLflow on the GPU machine (x86-64, Python 3.12, no internet, no Kedro/MLflow installed).
# Source it from the repository root at the start of a device command, with .whl-kedro and .whl
# carried there (both git-ignored):
#   source scripts/gpu_setup.sh && python3 -m kedro run --pipeline=optimize
# The project itself is not pip-installed (pyproject says requires-python <3.12): src/ goes on
# PYTHONPATH. Wheel lists: bench/gpu_kedro_wheels.txt (.whl-kedro) and bench/gpu_wheels.txt (.whl).

# From .whl, the wheels the Kedro side needs too: pydantic (kedro-mlflow, mlflow, fastapi),
# cryptography (google-auth, under mlflow's databricks-sdk), arrow + tzdata (cookiecutter, under
# kedro), and codecarbon with its dependencies (evaluate reads its carbon-intensity tables).
_gpu_whl=(pydantic pydantic_core annotated_types typing_inspection cryptography cffi pycparser
          arrow tzdata codecarbon authlib joserfc rapidfuzz questionary prompt_toolkit wcwidth pycountry)
_gpu_files=()
for _name in "${_gpu_whl[@]}"; do _gpu_files+=(.whl/"$_name"-[0-9]*.whl); done

# --no-deps: the set is complete with what the image has (numpy, pandas, torch, rich, click, ...)
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site \
    .whl-kedro/*.whl "${_gpu_files[@]}" || { echo "gpu_setup: pip install failed" >&2; return 1 2>/dev/null || exit 1; }
unset _gpu_whl _gpu_files _name

export PYTHONPATH="/tmp/site:$PWD/src"  # the local servers evaluate starts inherit it
export KEDRO_DISABLE_TELEMETRY=true DO_NOT_TRACK=1
export MLFLOW_DISABLE_TELEMETRY=true  # MLflow reads DO_NOT_TRACK only when it is "true", not "1"
export HF_HUB_OFFLINE=1
