#!/bin/bash
# Train and render variants of scripts/gpu_lip_motion.py side by side on one lent machine, and hand each back as ONE
# tar ($OUT/VARIANT.tar.partNN holding gpu_lip_motion's tars, its stdout and nvidia-smi's utilisation), since the
# device returns at most 8 files.
#
#   bash scripts/device_ab.sh CARRY DATASET MINUTES "VARIANT_A VARIANT_B ..." [gpu_lip_motion args...]
#
# A variant written VARIANT@NAME trains on CARRY/data/NAME instead of DATASET (the same variant on two
# preprocessings of one clip, say) and comes back as VARIANT_on_NAME.
# CARRY is the carried folder (git-ignored; scripts/make_carry.sh builds it):
# - CARRY/*.whl: what the GPU image lacks (av, soundfile, cffi, pycparser); without them, /tmp/site from an earlier
#   call on the still-warm machine;
# - CARRY/data/DATASET: a preprocessed dataset;
# - CARRY/audio/: driving speech; AB_AUDIO names the files used, three by default.
# Variant i runs on GPU i mod the machine's GPU count: on one GPU the variants share it, each getting its share; on
# `nvidia-h200-x2` two variants each get a whole GPU, so each trains as a whole call would. Machines differ in speed:
# compare variants of one call, not across calls. Each variant stops at AB_DEADLINE seconds (570 by default, under
# the device's 600-second call), and what its run directory holds by then (renders, log, diagnostics; not its
# checkpoints) is handed back, so a call that runs long still returns what it made. With `--stage train` the run
# stays in /tmp/work for a second call with `--stage render` on the warm machine.
set -u
started=$SECONDS
carry=$1 dataset=$2 minutes=$3 variants=$4
shift 4
if compgen -G "$carry/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$carry"/*.whl >/dev/null || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/scripts PYTHONUNBUFFERED=1
audio=/tmp/audio && mkdir -p $audio
for name in ${AB_AUDIO:-en_male_13s.wav en_tts_33s.mp3 ko_10s.wav}; do cp "$carry/audio/$name" $audio/; done
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader -l 20 > /tmp/smi.txt &
smi=$!
gpus=$(nvidia-smi -L | wc -l) && [ "$gpus" -gt 0 ] || gpus=1
pids=()
index=0
# entry → its variant, dataset, work folder and returned name ('+' and '@' are not allowed in returned names)
variant_of() { echo "${1%@*}"; }
data_of() { case $1 in *@*) echo "${1#*@}" ;; *) echo "$dataset" ;; esac; }
work_of() { case $1 in *@*) echo "/tmp/work/on_${1#*@}" ;; *) echo /tmp/work ;; esac; }
name_of() { local name=${1//+/_}; echo "${name//@/_on_}"; }
for entry in $variants; do
    variant=$(variant_of "$entry") work=$(work_of "$entry") name=$(name_of "$entry")
    # a new training replaces what an earlier call on the warm machine left under the same name
    case " $* " in *" --stage render "*) ;; *) rm -rf "$work/${variant//+/_}" "/tmp/out_$name" ;; esac
    (
        mkdir -p "/tmp/out_$name"
        export CUDA_VISIBLE_DEVICES=$((index % gpus))
        OUT=/tmp/out_$name timeout $((${AB_DEADLINE:-570} - (SECONDS - started))) python3 scripts/gpu_lip_motion.py \
            "$carry/data/$(data_of "$entry")" $audio "$work" --variant "$variant" --minutes "$minutes" "$@" \
            >> "/tmp/out_$name/stdout.txt" 2>&1
        echo "exit $?" >> "/tmp/out_$name/stdout.txt"
    ) &
    pids+=($!)
    index=$((index + 1))
done
wait "${pids[@]}"
kill $smi 2>/dev/null
for entry in $variants; do
    run=$(variant_of "$entry") work=$(work_of "$entry") name=$(name_of "$entry")
    run=${run//+/_}
    cp /tmp/smi.txt "/tmp/out_$name/stdout.txt" "$work/$run/"
    # over 15 MB goes back in parts: cat NAME.tar.part* | tar x
    tar cf "/tmp/$name.tar" -C "$work" --exclude=checkpoints --exclude='.*' --transform "s,^$run,$name," "$run"
    split -b 15M -d "/tmp/$name.tar" "$OUT/$name.tar.part"
    tail -c 1500 "/tmp/out_$name/stdout.txt"
done
