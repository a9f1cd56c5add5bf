#!/bin/bash
# One call of checks on the lent GPU, each with its output kept in $OUT/NAME.txt (docs/performance.md):
# - the CUDA tests of the fast path with a torso, with fixed samples and the Triton field;
# - `deltaplane bench` of the `fast` preset's fast path at batch 1 and 4, without and with a torso of its own;
# - the compiled training step against eager (`scripts/train_compile_check.py`): gradients in float32, then the
#   step times under the trainer's bf16 autocast.
#
#   bash scripts/device_checks.sh CARRY [DATASET]
#
# CARRY as scripts/device_ab.sh's (wheels, data/DATASET; DATASET defaults to obama). Each check has a time limit
# (60 s for the tests and each bench, 200 s for each compile check: 580 s in all, under the device's 600-second
# call; CHECK_SCALE multiplies them: on a cold machine, session 35, every check ran past them; CHECKS="bench
# compile_fp32" runs only those); the last lines printed are each check's summary.
set -u
carry=$1 dataset=${2:-obama}
if compgen -G "$carry/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$carry"/*.whl >/dev/null || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/scripts PYTHONUNBUFFERED=1
out=${OUT:-/tmp/checks} && mkdir -p "$out"
summary=()

check() {  # check NAME SECONDS LINES COMMAND...: run it, keep its output, remember its last LINES lines
    local name=$1 limit=$2 lines=$3 started=$SECONDS
    shift 3
    case " ${CHECKS:-$name} " in *" $name "*) ;; *) return ;; esac
    echo "+ $*"
    timeout "$(python3 -c "print(round($limit * ${CHECK_SCALE:-1}))")" "$@" > "$out/$name.txt" 2>&1
    local status=$?
    summary+=("== $name (exit $status, $((SECONDS - started)) s)"
              "$(grep -v Warning "$out/$name.txt" | tail -n "$lines")")
}

check tests 60 3 python3 -m pytest -q -m cuda tests/test_fastpath.py tests/models/test_triplane_talker.py \
    tests/test_geometry_precision.py -k "torso or triton or fixed_samples or autocast"
check bench 60 8 python3 -m deltaplane.cli bench --random-weights --preset fast --batch 1,4 --frames 240
check bench_torso 60 8 python3 -m deltaplane.cli bench --random-weights --preset fast --batch 1,4 --frames 240 --torso
check compile_fp32 200 6 python3 scripts/train_compile_check.py "$carry/data/$dataset" --steps 5 --precision 32-true
check compile_bf16 200 6 python3 scripts/train_compile_check.py "$carry/data/$dataset" --steps 10
printf '%s\n' "${summary[@]}"
