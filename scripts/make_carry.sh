#!/bin/bash
# Build a carried folder for the lent GPU machine (scripts/device_ab.sh's CARRY): the wheels its image lacks (PyAV,
# soundfile and soundfile's cffi / pycparser, for its Python 3.12), one preprocessed dataset as data/NAME and the
# driving speech as audio/. A call may carry 64 MiB, and the wheels alone take ~36 MB, so a large dataset goes
# without them (--no-wheels): its call then runs on a warm machine where an earlier call installed them in
# /tmp/site.
#
#   bash scripts/make_carry.sh DEST NAME DATASET_DIR [AUDIO_DIR] [--no-wheels] [--also NAME2=DATASET_DIR2 ...]
#   bash scripts/make_carry.sh .carry obama data/obama_20s && bash scripts/make_carry.sh .carry_m macron \
#       data/macron_fr_50s --no-wheels
#
# DEST is replaced; `/.carry*/` is git-ignored. AUDIO_DIR defaults to ../shared/data/audio; with AB_AUDIO set (the
# names device_ab.sh drives with) only those files go. `--also` carries more datasets as data/NAME2 (device_ab.sh's
# VARIANT@NAME2). A dataset's .stages/ (resume records and the raw tracks) stays behind.
set -euo pipefail
wheels=1
args=()
also=()
while [ $# -gt 0 ]; do
    case $1 in
        --no-wheels) wheels=0 ;;
        --also) also+=("$2"); shift ;;
        *) args+=("$1") ;;
    esac
    shift
done
dest=${args[0]} name=${args[1]} dataset=${args[2]} audio=${args[3]:-../shared/data/audio}
rm -rf "$dest" && mkdir -p "$dest/data" "$dest/audio"
for pair in "$name=$dataset" ${also[@]+"${also[@]}"}; do
    source_dir=${pair#*=}
    [ -f "$source_dir/manifest.json" ] || { echo "$source_dir is not a preprocessed dataset (no manifest.json)" >&2; exit 2; }
    cp -r "$source_dir" "$dest/data/${pair%%=*}"
    rm -rf "$dest/data/${pair%%=*}/.stages"
done
if [ -n "${AB_AUDIO:-}" ]; then
    for file in $AB_AUDIO; do cp "$audio/$file" "$dest/audio/"; done
else
    cp "$audio"/* "$dest/audio/"
fi
if [ $wheels = 1 ]; then
    pins=$(grep -E '^(av|soundfile)==' requirements.txt | cut -d' ' -f1)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux_2_27_x86_64 --platform manylinux1_x86_64 -d "$dest" $pins cffi pycparser
fi
size=$(du -sm "$dest" | cut -f1)
count=$(ls "$dest" | grep -c '\.whl$' || true)
echo "$dest: ${size} MiB ($count wheels, data/: $(ls "$dest/data" | tr '\n' ' '), $(ls "$dest/audio" | wc -l) audio files)"
[ "$size" -lt 64 ] || echo "over the 64 MiB a call can carry: drop the wheels (--no-wheels) or audio files" >&2
