#!/usr/bin/env bash
# The GPU check in one command: pretraining throughput of the pipeline's Trainer, of the library step
# and of HF compiled, and a pretraining run for the downstream-gain measurement, ending with ONE table.
#
# What it measures, on one GPU under KERAS_BACKEND=jax (no TensorFlow, no Beam, no network there):
#   (a) the pipeline Trainer's own training function (components.trainer.pretrain.train, in its JAX
#       child) on Parquet shards made here beforehand: bench/trainer_steps.py, base preset, 64x512 and
#       128x128;
#   (b) the library step (AlbertPretrainer under XLA) and HF AlbertForPreTraining under torch.compile,
#       same shapes, 30 timed steps after 5 warm-up: bench/train_throughput.py;
#   (c) pretraining of the base-shaped model for the downstream gain (bench/pretrain_gain.py --budget
#       gpu) from inputs prepared here (corpus tokens, vocabulary), for M minutes of training time, the
#       fine-tuning rows left for later (--skip-rows).
# Goals printed beside the figures: the Trainer >= 0.95x the library step at the same shape; the library
# step >= 1.3x HF compiled. The H100 figures of bench/RESULTS.md stand beside them (library 1,173 and
# 4,845 seq/s, HF compiled 1,057 and 4,413).
#
# Time (8 minutes in all, estimated from the H100 run: first compile of our step 21 s, torch.compile
# 35 s; each (implementation, shape) in its own process): wheels and versions 10 s; (a) 2 x 40 s;
# (b) ours 2 x 35 s, HF compiled 2 x 50 s; (c) 130 s besides training (start, masking 8 passes on 16
# cores about 40 s, two compiles, held-out points, saving). M is what is left of DEVICE_BUDGET_S (480)
# when (c) starts, less those 130 s and 10 s for the table, between 1 and 5 minutes (about 1.5 where
# the estimates hold). Each part has its own time limit, so the whole ends by DEVICE_HARD_S (570 s)
# and the table is always printed.
#
# Prepare here, on CPU (downloads the keras, namex and optree wheels into .whl/, writes the trainer
# shards and the gain inputs into build/device/, prints the carried size and the device call):
#     bench/device_check.sh prepare
# Then on the GPU machine, in a copy of the repository that holds .whl/ and build/device/ beside the
# tracked files (about 18 MiB in all), from its root, with 10 minutes allowed:
#     bash bench/device_check.sh
# CPU check of this script's logic (tiny preset, one small shape, a few steps; HF through .venv-hf):
#     bench/device_check.sh smoke
#
# Results: the table at the end of the output; under $OUT (what is fetched from the GPU machine;
# ./device_out where OUT is unset, build/device_smoke_out for smoke): device_check.json (device,
# versions, every part's JSON, the table, the last log lines of a failed part) and gain/
# (pretrain_gain.json, albert_config.json, spm.model, weights/ in files of at most 16 MiB: 8 files in
# all at the gpu budget, so that fetching them is one small transfer). The gain's fine-tuning rows then run here from
# what came back:
#     .venv/bin/python bench/pretrain_gain.py --budget gpu --rows-only --init FETCHED/gain --out runs/gain_gpu
# Exit status 1 where a part failed (the table says which); the goals are reported, not enforced.
set -euo pipefail
cd "$(dirname "$0")/.."

PREPARED=build/device
WHEELS=.whl
CARRY=(.whl build/device)
SHAPES=(64x512 128x128)
DEVICE_BUDGET_S=${DEVICE_BUDGET_S:-480}
DEVICE_HARD_S=${DEVICE_HARD_S:-570}
GAIN_OVERHEAD_S=130
REPORT_S=10
HOST_PYTHON=python3
[[ -x .venv/bin/python ]] && HOST_PYTHON=.venv/bin/python

log() { echo "[device_check] $*" >&2; }

# part NAME LIMIT_S COMMAND...: one part, its output to the console and WORK/NAME.log, its exit status
# and seconds to WORK/parts.txt; a failure is recorded, never the end of the check.
part() {
    local name=$1 limit=$2 began=$SECONDS code=0
    shift 2
    log "$name (at most ${limit} s): $*"
    if ((limit < 10)); then
        log "$name: no time left"
        echo "$name 124 0" >>"$WORK/parts.txt"
        return 0
    fi
    timeout --kill-after=15 "$limit" "$@" 2>&1 | tee "$WORK/$name.log" || code=${PIPESTATUS[0]}
    echo "$name $code $((SECONDS - began))" >>"$WORK/parts.txt"
    log "$name: exit $code after $((SECONDS - began)) s"
}

# left CAP_S: seconds a part may take: CAP_S, or less where the hard end is nearer.
left() {
    local room=$((DEVICE_HARD_S - SECONDS - REPORT_S))
    echo $((room < $1 ? room : $1))
}

shape_args() {
    local shape
    for shape in "$@"; do printf -- '--shape %s ' "$shape"; done
}

# measure PYTHON PRESET TRAINER_STEPS STEPS WARMUP HF_PYTHON GAIN_BUDGET GAIN_MINUTES SHARDS PREPARED_GAIN
# SHAPE...: parts (a), (b) and (c), then the table. HF_PYTHON empty: the HF side is skipped. GAIN_MINUTES
# "auto": what the time budget leaves.
measure() {
    local python=$1 preset=$2 trainer_steps=$3 steps=$4 warmup=$5 hf_python=$6 gain_budget=$7
    local gain_minutes=$8 shards=$9 prepared_gain=${10}
    shift 10
    local shapes
    read -r -a shapes <<<"$(shape_args "$@")"
    mkdir -p "$OUT"
    : >"$WORK/parts.txt"

    part trainer "$(left 180)" "$python" bench/trainer_steps.py --backend jax --preset "$preset" \
        "${shapes[@]}" --steps "$trainer_steps" --shards "$shards" --json "$WORK/trainer_steps.json"

    local impls=(--impl ours)
    if [[ -n $hf_python ]]; then
        impls+=(--impl hf-compile --hf-python "$hf_python")
    else
        log "HF compiled skipped: no .venv-hf here (the table has no HF rows)"
    fi
    part throughput "$(left 270)" "$python" bench/train_throughput.py --preset "$preset" "${shapes[@]}" \
        "${impls[@]}" --steps "$steps" --warmup "$warmup" --timeout 130 --json "$WORK/train_throughput.json"

    if [[ $gain_minutes == auto ]]; then
        # What the budget leaves, at least a minute, at most five, and never past the hard end.
        local room=$((DEVICE_BUDGET_S - SECONDS - GAIN_OVERHEAD_S - REPORT_S))
        local hard=$((DEVICE_HARD_S - SECONDS - GAIN_OVERHEAD_S - REPORT_S - 20))
        room=$((room < 60 ? 60 : room > 300 ? 300 : room))
        room=$((room > hard ? hard : room))
        room=$((room < 15 ? 15 : room))
        gain_minutes=$(awk "BEGIN { printf \"%.2f\", $room / 60 }")
        log "gain: ${gain_minutes} min of pretraining fit the ${DEVICE_BUDGET_S} s budget at ${SECONDS} s"
    fi
    part gain "$(left 600)" "$python" bench/pretrain_gain.py --budget "$gain_budget" \
        --from-prepared "$prepared_gain" --skip-rows --minutes "$gain_minutes" --out "$WORK/gain"
    # What comes back: the report and the model in files of at most 16 MiB (pretrainer.keras stays).
    mkdir -p "$OUT/gain"
    local file
    for file in pretrain_gain.json albert_config.json spm.model weights; do
        if [[ -e $WORK/gain/$file ]]; then cp -r "$WORK/gain/$file" "$OUT/gain/"; fi
    done

    local code=0
    "$python" bench/device_report.py report --work "$WORK" --out "$OUT/device_check.json" \
        --mode "$MODE" || code=$?
    local files
    files=$(find "$OUT" -type f | wc -l)
    log "results in $OUT: $files files"
    ((files <= 8)) || log "WARNING: $files files under $OUT, where the check means to leave 8"
    return "$code"
}

prepare() {
    rm -rf "$WHEELS" "$PREPARED"
    mkdir -p "$WHEELS" "$PREPARED"
    local name version
    for name in keras namex optree; do
        version=$("$HOST_PYTHON" -c "import importlib.metadata as m; print(m.version('$name'))")
        log "wheel $name==$version"
        "$HOST_PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
            --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            --platform manylinux1_x86_64 -d "$WHEELS" "$name==$version"
    done
    read -r -a shapes <<<"$(shape_args "${SHAPES[@]}")"
    "$HOST_PYTHON" bench/trainer_steps.py --write-shards "$PREPARED/shards" "${shapes[@]}"
    KERAS_BACKEND=jax "$HOST_PYTHON" bench/pretrain_gain.py --budget gpu --prepare-only \
        --out "$PREPARED/gain" --data "${DEVICE_CHECK_DATA:-../shared/data}"
    echo
    echo "to carry:"
    "$HOST_PYTHON" bench/device_report.py sizes --carry "${CARRY[@]}"
    echo "copy with the repository: ${CARRY[*]}"
    echo "then, on the GPU machine, from the repository root: bash bench/device_check.sh"
}

device() {
    OUT=${OUT:-./device_out}
    WORK=$(mktemp -d /tmp/device_check.XXXXXX)
    local missing=0 path
    for path in "$WHEELS" "$PREPARED/shards" "$PREPARED/gain"; do
        [[ -e $path ]] || { log "$path is missing: run bench/device_check.sh prepare here first"; missing=1; }
    done
    ((missing == 0)) || exit 2
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$WHEELS"/*.whl
    export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
    export TF_CPP_MIN_LOG_LEVEL=2
    nvidia-smi -L >"$WORK/nvidia-smi.txt" 2>&1 || echo "nvidia-smi failed" >"$WORK/nvidia-smi.txt"
    measure python3 base 20 30 5 python3 gpu auto "$PREPARED/shards" "$PREPARED/gain" "${SHAPES[@]}"
}

smoke() {
    OUT=${OUT:-build/device_smoke_out} # ignored, and outside the carried build/device
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/device_check_smoke.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT # what matters is under $OUT, failed parts' last log lines included
    DEVICE_HARD_S=1200 # two shared CPU cores, not the GPU machine's 10-minute command limit
    export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
    local hf_python=""
    # DEVICE_CHECK_HF=0 leaves HF out (torch.compile on two CPU cores takes a minute or more).
    [[ ${DEVICE_CHECK_HF:-1} == 1 && -x .venv-hf/bin/python ]] && hf_python=.venv-hf/bin/python
    PYTHONPATH=$PWD "$HOST_PYTHON" bench/trainer_steps.py --write-shards "$WORK/prepared/shards" --shape 4x64
    PYTHONPATH=$PWD "$HOST_PYTHON" bench/pretrain_gain.py --budget smoke --prepare-only \
        --out "$WORK/prepared/gain" --data "${DEVICE_CHECK_DATA:-../shared/data}"
    "$HOST_PYTHON" bench/device_report.py sizes --carry "$WORK/prepared" >&2
    # The parts run as on the GPU machine, where TensorFlow is absent: every Python process they start
    # (children and workers too) finds none.
    mkdir -p "$WORK/no_tensorflow"
    printf '%s\n' '"""bench/device_check.sh smoke: no TensorFlow, as on the GPU machine."""' 'import sys' '' \
        'sys.modules["tensorflow"] = None' >"$WORK/no_tensorflow/sitecustomize.py"
    export PYTHONPATH="$WORK/no_tensorflow:$PWD${PYTHONPATH:+:$PYTHONPATH}"
    measure "$HOST_PYTHON" tiny 4 3 1 "$hf_python" smoke 0.1 "$WORK/prepared/shards" \
        "$WORK/prepared/gain" 4x64
}

MODE=${1:-device}
case $MODE in
prepare) prepare ;;
device) device ;;
smoke) smoke ;;
*)
    echo "usage: bench/device_check.sh [prepare|smoke]   (no argument: the GPU check)" >&2
    exit 2
    ;;
esac
