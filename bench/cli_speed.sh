#!/bin/bash
# Issue 19 on the command line, whole process: the floor (ffmpeg re-encoding the input with the speech at
# x264 veryfast, CRF 18), then `python -m heygem generate` as a user runs it: the built-in engine with a new
# presenter (empty caches), again with that presenter prepared (its faces and study kept; the speech's phones
# are recognised again, as for any new speech), and Wav2Lip (deterministic test weights, same cost as a
# real checkpoint). Inputs: the benchmark's 60 s of 1280x720.
# Usage: bench/cli_speed.sh [ROUNDS]   (each round runs all four, one after another)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
# The benchmark's own inputs, built (once, cached under bench/out/inputs) as `python -m heygem.bench` builds them.
read -r VIDEO SPEECH < <($PY -c "from heygem.bench import build_inputs, default_shared
print(*build_inputs(60, (1280, 720), default_shared() / 'media'))")
WORK=$(mktemp -d /tmp/heygem-cli-speed.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
FFMPEG=$($PY -c "from heygem.media.ffmpeg import ffmpeg_exe; print(ffmpeg_exe())")
$PY -c "from models.wav2lip import save_test_checkpoint as s; s('../shared/reference/wav2lip/generator_manifest.json', '$WORK/wav2lip_test.pth')"
timed() {  # label, command...: wall seconds of the whole command
    local label=$1; shift
    local start end
    start=$(date +%s.%N); "$@" > "$WORK/last.log" 2>&1; end=$(date +%s.%N)
    echo "$label $(echo "$end - $start" | bc)"
}
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "${1:-1}"); do
    rm -rf "$WORK/caches"
    floor=$(timed floor "$FFMPEG" -v error -y -i "$VIDEO" -i "$SPEECH" -map 0:v:0 -map 1:a:0 -c:v libx264 \
        -preset veryfast -crf 18 -c:a aac -shortest "$WORK/floor.mp4" | cut -d' ' -f2)
    echo "round $round: floor $floor s"
    for run in new prepared; do
        line=$(timed "builtin-$run" $PY -m heygem generate --engine builtin --audio "$SPEECH" --video "$VIDEO" \
            --out "$WORK/builtin-$run.mp4" --face-cache "$WORK/caches/faces")
        echo "  $line s ($(echo "scale=2; ${line#* } / $floor" | bc)x the floor)"
    done
    line=$(timed wav2lip $PY -m heygem generate --engine wav2lip --checkpoint "$WORK/wav2lip_test.pth" \
        --audio "$SPEECH" --video "$VIDEO" --out "$WORK/wav2lip.mp4" --face-cache "$WORK/caches/faces-w2l")
    echo "  $line s ($(echo "scale=2; ${line#* } / $floor" | bc)x the floor)"
done
