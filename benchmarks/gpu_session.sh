#!/usr/bin/env bash
# The prepared GPU check (issue 8 item 6) for a session that is lent an H100/H200 through the
# workplace's `device` tool: bench_gpu.py (encoder tiles/s per batch size, then the whole pipeline)
# bench_feed.py (the CPU side, on that machine's cores) and bench_families.py (every model family's
# encoder), in one run of about 8 minutes.
#
# That machine has Python 3.12, torch, transformers, OpenCV and scikit-image, but not rasterio,
# shapely, pyproj, geopandas or pyogrio. Their wheels (~78 MB) exceed what one call may carry
# (64 MiB), so they travel in two sets and are installed into one folder on the warm machine:
#
#   here:    bash benchmarks/gpu_session.sh download     # wheels into .whl/a (47 MB) and .whl/b (33 MB)
#   device:  run  command="bash benchmarks/gpu_session.sh install a"      carry=[".whl/a"]
#            run  command="bash benchmarks/gpu_session.sh install b run"  carry=[".whl/b"]
#            (the second call at once: a machine left idle ~30 s is given back, and /tmp with it)
#
# `run` writes card.txt, bench_gpu.txt and bench_feed.txt to $OUT (build/gpu when $OUT is unset);
# without a CUDA device bench_gpu.py says so and exits 0, so `run` can be tried here on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
SITE=${SAMGEO_GPU_SITE:-/tmp/samgeo-site}
PYTHON=${PYTHON:-python3}
SET_A="rasterio==1.4.4 affine==3.0.1 click-plugins==1.1.1.2 cligj==0.7.2 shapely==2.2.0 pyproj==3.7.2 geopandas==1.2.0"
SET_B="pyogrio==0.13.0"

download() {
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    local set
    for set in a b; do
        local names=$SET_A
        [ "$set" = b ] && names=$SET_B
        # shellcheck disable=SC2086
        "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 -d ".whl/$set" $names
        du -sh ".whl/$set"
    done
}

install() {
    "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" ".whl/$1"/*.whl
    echo "installed .whl/$1 into $SITE"
}

run() {
    local out=${OUT:-build/gpu}
    mkdir -p "$out"
    export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "no nvidia-smi"
      nproc; "$PYTHON" -c "import torch, transformers, rasterio; print(torch.__version__, torch.version.cuda, transformers.__version__, rasterio.__version__)"
    } | tee "$out/card.txt"
    # Encoder batch 1..32 (3 s each), then the 8192² pipeline at batch 16; then bf16 weights.
    timeout 240 "$PYTHON" benchmarks/bench_gpu.py 2>&1 | tee "$out/bench_gpu.txt" || echo "bench_gpu.py: exit $?" | tee -a "$out/bench_gpu.txt"
    timeout 100 "$PYTHON" benchmarks/bench_gpu.py --bf16-weights --batch-sizes 8,16,32 --pipeline-size 0 2>&1 \
        | tee -a "$out/bench_gpu.txt" || echo "bench_gpu.py --bf16-weights: exit $?" | tee -a "$out/bench_gpu.txt"
    timeout 150 "$PYTHON" benchmarks/bench_feed.py --repeat 2 2>&1 | tee "$out/bench_feed.txt" || echo "bench_feed.py: exit $?" | tee -a "$out/bench_feed.txt"
    # Every model family's encoder (SAM, SAM-HQ, SAM 2.1 t/s/b+/l, SAM 3 with one phrase), batch 8, autocast as segment does.
    timeout 100 "$PYTHON" benchmarks/bench_families.py --device cuda --batch 8 --iters 10 2>&1 | tee "$out/bench_families.txt" \
        || echo "bench_families.py: exit $?" | tee -a "$out/bench_families.txt"
}

[ $# -ge 1 ] || { echo "usage: $0 download | install a|b [run] | run" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        download) download; shift ;;
        install) install "${2:?install needs a or b}"; shift 2 ;;
        run) run; shift ;;
        *) echo "$0: unknown step '$1' (download, install a|b, run)" >&2; exit 2 ;;
    esac
done
