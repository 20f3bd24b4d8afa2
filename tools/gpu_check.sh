#!/usr/bin/env bash
# GPU check, in one run from the repository root (about 5-8 minutes on an H100/H200):
#
#   1. installs the project's Python dependencies from .whl/ if detectron2 is not importable;
#   2. tools/benchmark.py model: AInnoFace R152 vs stock RetinaNet R152 P2-P7 (same process), training
#      bs8 @ 1024 and inference, fp32 and AMP, and the GFLOPs at VGA; one table;
#   3. tools/benchmark.py mapper: the training data mapper, images/s per CPU core;
#   4. tools/benchmark.py evaluator: the WIDER FACE evaluation on the full val ground truth (if
#      .whl/ground_truth, datasets/ or ../shared has it);
#   5. tests/test_amp.py: mixed-precision training stability (SOLVER.AMP.ENABLED, the R18 config
#      on built-in faces) and the fp16-vs-fp32 agreement of the trained model's detections.
#   6. tools/benchmark.py crowded (if datasets/wider_face or ../shared/widerface has the WIDER
#      FACE annotation files): peak GPU memory and time of an R50 training step on an ordinary
#      and the most crowded train layout, and of inference (original, multiscale) on the most
#      crowded val layout;
#   7. tools/benchmark_deploy.py: the deployment routes on the GPU.
#
# Everything it writes goes to $OUT (default /tmp/gpu_check): benchmark.json and the logs.
#
# Preparing .whl/ (once; .whl/ is in .gitignore) for a GPU machine that has torch/torchvision,
# numpy, opencv, scipy, scikit-image, matplotlib, pyyaml, tqdm, tabulate, portalocker,
# cloudpickle, Pillow and pytest but not detectron2 and these (Python 3.12 there):
#
#   mkdir -p .whl
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 -d .whl pycocotools==2.0.11 iopath==0.1.9 yacs==0.1.8 \
#       termcolor==3.3.0 omegaconf==2.3.1
#   # fvcore and antlr4 (omegaconf's parser) exist on PyPI only as sdists: build pure wheels.
#   python3 -m pip download --no-deps --no-binary=:all: -d /tmp/sdists \
#       fvcore==0.1.5.post20221221 antlr4-python3-runtime==4.9.3
#   .venv/bin/python -m pip wheel --no-deps -w .whl /tmp/sdists/*.tar.gz
#   # detectron2 v0.6, pure Python (as tools/install_detectron2.py installed it in .venv):
#   rm -rf /tmp/d2w && mkdir /tmp/d2w && cp -r .venv/lib/python3.11/site-packages/detectron2 \
#       /tmp/d2w/ && find /tmp/d2w -name __pycache__ -prune -exec rm -rf {} +
#   printf '%s\n' 'from setuptools import find_packages, setup' \
#       'setup(name="detectron2", version="0.6", packages=find_packages(include=["detectron2*"]),' \
#       '      package_data={"detectron2": ["model_zoo/configs/**/*"]})' > /tmp/d2w/setup.py
#   .venv/bin/python -m pip wheel --no-deps -w .whl /tmp/d2w
#   # the official WIDER FACE val ground truth (4 .mat files), if the GPU machine lacks it:
#   cp -r ../shared/widerface/ground_truth .whl/
#
# (about 4 MB in all). Smoke test of the same code paths on CPU (tiny sizes, a few minutes; the
# AMP test skips without CUDA):
#   GPU_CHECK_SMOKE=1 bash tools/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_check}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
if [ -x .venv/bin/python ] && ! "$PY" -c "import torch" 2>/dev/null; then PY=.venv/bin/python; fi

if ! "$PY" -c "import detectron2, fvcore, pycocotools" 2>/dev/null; then
    if [ ! -d .whl ]; then
        echo "detectron2 is not importable and there is no .whl/ folder: see the top of $0" >&2
        exit 2
    fi
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 3
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv,noheader
"$PY" -c "import ainnoface_d2, detectron2, torch; print('torch', torch.__version__, \
'cuda', torch.cuda.is_available(), 'detectron2', detectron2.__version__)" || exit 4

GT=""
for d in .whl/ground_truth datasets/wider_face/eval_tools/ground_truth \
    ../shared/widerface/ground_truth; do
    if [ -f "$d/wider_face_val.mat" ]; then GT="$d"; break; fi
done
WHAT="train,infer,flops"
[ -n "$GT" ] || echo "no WIDER val ground truth: the evaluator timing is skipped"

if [ -n "${GPU_CHECK_SMOKE:-}" ]; then
    # The same code paths on CPU, tiny: R18 config, 128 px, a few steps.
    ARGS=(--config-file configs/ainnoface_R18_cpu.yaml --device cpu --batch 1 --size 128
          --infer-batch 2 --train-iters 1 --infer-iters 1)
    MAPPER_ARGS=(--iters 5 --num-images 2 --warmup 1)
    EVAL_ARGS=(--reps 1)
else
    ARGS=(--config-file configs/ainnoface_R152.yaml --device cuda --amp both --batch 8 --size 1024
          --infer-batch 8)
    MAPPER_ARGS=(--iters 150)
    EVAL_ARGS=(--reps 3)
fi

status=0
"$PY" tools/benchmark.py model "${ARGS[@]}" --task "$WHAT" --json "$OUT/benchmark.json" \
    2>&1 | tee "$OUT/benchmark.log" | grep -v -E "^\s*warnings.warn|Warning:"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
"$PY" tools/benchmark.py mapper "${MAPPER_ARGS[@]}" 2>&1 | tee "$OUT/benchmark_mapper.log" \
    | grep -v -E "^\s*warnings.warn|Warning:|Augmentations used"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
if [ -n "$GT" ]; then
    "$PY" tools/benchmark.py evaluator --gt "$GT" "${EVAL_ARGS[@]}" 2>&1 \
        | tee "$OUT/benchmark_evaluator.log" | grep -v -E "^\s*warnings.warn|Warning:"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
"$PY" -m pytest -q -rs tests/test_amp.py 2>&1 | tee "$OUT/test_amp.log" | tail -5
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
WIDER=""
for d in datasets/wider_face ../shared/widerface; do
    if [ -f "$d/wider_face_split/wider_face_train_bbx_gt.txt" ]; then WIDER="$d"; break; fi
done
if [ -z "$WIDER" ]; then
    echo "no WIDER FACE annotation files: the crowded-layout step is skipped"
else
    if [ -n "${GPU_CHECK_SMOKE:-}" ]; then
        CROWDED=(--device cpu --config-file configs/ainnoface_R18_cpu.yaml --steps 1
                 INPUT.FACE.TRAIN_SIZE 256)
        PROTOCOLS=(original)
    else
        CROWDED=(--device cuda --config-file configs/ainnoface_R50.yaml --steps 3)
        PROTOCOLS=(original multiscale)
    fi
    for mode in train ${PROTOCOLS[@]}; do
        if [ "$mode" = train ]; then SEL=(--mode train); else SEL=(--mode test --protocol "$mode"
            --layouts top1); fi
        "$PY" tools/benchmark.py crowded --wider-root "$WIDER" "${SEL[@]}" "${CROWDED[@]}" 2>&1 \
            | tee -a "$OUT/benchmark_crowded.log" | grep -v -E "^\s*warnings.warn|Warning:"
        [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    done
fi
# Deployment routes on the GPU (tools/benchmark_deploy.py): PyTorch fp32 and fp16 (CUDA
# autocast), ONNX Runtime fp32 (CUDA execution provider) and fp16 (TensorRT execution provider,
# trt_fp16_enable) of the exported graph, with stock RetinaNet fp32 beside them: latency at
# batch 1 @ 640x480, throughput at batch 8, GMAC, and the agreement of every route's detections
# with PyTorch fp32 (IoU >= 0.9; random weights, so every detection counts: --parity-score 0).
# The ONNX Runtime routes need onnxruntime-gpu (with TensorRT for fp16), too large for .whl/:
# where it is missing they are printed as skipped, with the reason.
if [ -n "${GPU_CHECK_SMOKE:-}" ]; then
    DEPLOY=(--device cpu --quick --configs configs/ainnoface_R18_cpu.yaml --size 160x128
            --routes torch:fp32 onnxruntime:fp32)
else
    DEPLOY=(--device cuda --configs configs/ainnoface_R50.yaml configs/ainnoface_R152.yaml
            --size 640x480 --batch 8 --reps 20 --parity-score 0)
fi
"$PY" tools/benchmark_deploy.py "${DEPLOY[@]}" --json "$OUT/benchmark_deploy.json" \
    2>&1 | tee "$OUT/benchmark_deploy.log" | grep -v -E "^\s*warnings.warn|Warning:"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
exit "$status"
