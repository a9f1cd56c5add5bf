#!/bin/bash
# Build a carried folder for the lent GPU machine (scripts/device_ab.sh's CARRY): the wheels its image lacks (PyAV,
# soundfile and soundfile's cffi / pycparser, for its Python 3.12), one preprocessed dataset as data/NAME and the
# driving speech as audio/. A call may carry 64 MiB, and the wheels alone take ~36 MB, so a large dataset goes
# without them (--no-wheels): its call then runs on a warm machine where an earlier call installed them in
# /tmp/site.
#
#   bash scripts/make_carry.sh DEST NAME DATASET_DIR [AUDIO_DIR] [--no-wheels]
#   bash scripts/make_carry.sh .carry obama data/obama_20s && bash scripts/make_carry.sh .carry_m macron \
#       data/macron_fr_50s --no-wheels
#
# DEST is replaced; `/.carry*/` is git-ignored. AUDIO_DIR defaults to ../shared/data/audio.
set -euo pipefail
wheels=1
args=()
for arg in "$@"; do
    case $arg in --no-wheels) wheels=0 ;; *) args+=("$arg") ;; esac
done
dest=${args[0]} name=${args[1]} dataset=${args[2]} audio=${args[3]:-../shared/data/audio}
[ -f "$dataset/manifest.json" ] || { echo "$dataset is not a preprocessed dataset (no manifest.json)" >&2; exit 2; }
rm -rf "$dest" && mkdir -p "$dest/data" "$dest/audio"
cp -r "$dataset" "$dest/data/$name"
cp "$audio"/* "$dest/audio/"
if [ $wheels = 1 ]; then
    pins=$(grep -E '^(av|soundfile)==' requirements.txt | cut -d' ' -f1)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux_2_27_x86_64 --platform manylinux1_x86_64 -d "$dest" $pins cffi pycparser
fi
size=$(du -sm "$dest" | cut -f1)
count=$(ls "$dest" | grep -c '\.whl$' || true)
echo "$dest: ${size} MiB ($count wheels, data/$name, $(ls "$dest/audio" | wc -l) audio files)"
[ "$size" -lt 64 ] || echo "over the 64 MiB a call can carry: drop the wheels (--no-wheels) or audio files" >&2
