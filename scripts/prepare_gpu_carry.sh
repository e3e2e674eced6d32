#!/usr/bin/env bash
# Prepare what the lent GPU machine lacks, for the GPU tests and the streams bench (see the device tool's
# notes: wheels travel through `carry`, 64 MiB a call, so this makes three folders to carry in two calls).
#
#   scripts/prepare_gpu_carry.sh            # after `make setup` (uses .venv, .assets and apt)
#
# .whl/       wheels for Python 3.12 manylinux: paho-mqtt, pydantic(-settings), aiohttp, prometheus-client,
#             PyNvVideoCodec, trackers + supervision, py-spy, Ultralytics (the GPU pipeline tests export .pt)
# .gpudeb/    Debian's mosquitto binary with the shared libraries it loads (not glibc), for a local broker
# .gpuassets/ YOLO-World v8s as an fp16 TorchScript at 384x672, the 1080p30 H.264/H.265 clips in the cache
#             layout the bench looks for, and streams.yaml (configs/gpu-streams.yaml pointed at them)
#
# On the GPU machine (call 1, carry [".whl", ".gpudeb"]):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   cp -r .gpudeb /tmp/gpudeb && LD_LIBRARY_PATH=/tmp/gpudeb/lib setsid /tmp/gpudeb/mosquitto -p 1883 -d
# then (call 2, carry [".gpuassets"], PYTHONPATH=/tmp/site:$PWD):
#   python3 scripts/bench_wait.py -c .gpuassets/streams.yaml --cameras 24 32 40 --workers 8
#   python3 -m edge_daemon bench -c .gpuassets/streams.yaml --cameras 64 --workers 8 --no-ultralytics
# Everything in ONE call (what the last session did; a later call to a warm machine does not find what an
# earlier one installed in the work tree): .gpuship/ holds the wheels unpacked, pruned and xz-packed
# (site.tar.xz, 7 MB: PyNvVideoCodec without its sources, samples and CUDA 12.1 build) and the broker
# (mosq.tar.xz); with the model, the H.264 clips and the real demo clip it is 62 MiB:
#   carry [".gpuship", ".gpuassets/yolov8s-world-384x672-fp16.torchscript", ".gpuassets/streams.yaml",
#          ".gpuassets/one.yaml", ".gpuassets/vtest.avi", ".gpuassets/real",
#          ".gpuassets/cache/streams/vtest-1920x1080-30-h264-loop42s.mp4",
#          ".gpuassets/cache/streams/vtest-1920x1080-30-h264.mp4"]
#   mkdir -p /tmp/site /tmp/mq && tar xJf .gpuship/site.tar.xz -C /tmp/site && tar xJf .gpuship/mosq.tar.xz -C /tmp/mq
#   export PYTHONPATH=/tmp/site:$PWD; LD_LIBRARY_PATH=/tmp/mq/lib setsid /tmp/mq/mosquitto -p 1883 -d
#   python3 -m edge_daemon bench -c .gpuassets/streams.yaml --cameras 64 --counts 32 48 --no-ultralytics
#   python3 -m edge_daemon bench -c .gpuassets/one.yaml --frames 400 --rounds 3 --no-ultralytics
# (the GPU tests want the 10 s clip as .gpuassets/streams-1080p-h264.mp4: copy it there first).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
for d in /.whl/ /.whlmin/ /.gpudeb/ /.gpuassets/; do grep -qxF "$d" .git/info/exclude 2>/dev/null || echo "$d" >> .git/info/exclude; done

rm -rf .whl && mkdir .whl
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
      --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64 --platform any)
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" -d .whl \
  paho-mqtt pydantic pydantic-core pydantic-settings python-dotenv typing-inspection annotated-types \
  aiohttp multidict yarl frozenlist aiosignal propcache aiohappyeyeballs attrs prometheus-client \
  PyNvVideoCodec trackers supervision pydeprecate defusedxml rich markdown-it-py mdurl pygments py-spy \
  "ultralytics==$($PY -c 'import ultralytics; print(ultralytics.__version__)')" ultralytics-thop \
  ultralytics-platform nvidia-ml-py

rm -rf .gpudeb && mkdir -p .gpudeb/lib
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || apt-get install -y -qq mosquitto
cp /usr/sbin/mosquitto .gpudeb/
for lib in $(ldd /usr/sbin/mosquitto | awk '/=>/ {print $3}'); do
  case $(basename "$lib") in libc.so*|libm.so*|libpthread*|libdl.so*|librt.so*) ;; *) cp -L "$lib" .gpudeb/lib/ ;; esac
done

mkdir -p .gpuassets/cache/streams
$PY - <<'PY'
from pathlib import Path

import torch

from edge_daemon.build.export import resolve_torchscript
from edge_daemon.config import load_settings
from edge_daemon.tools.clips import lasting
from edge_daemon.tools.streams import TRIAL_MARGIN_S, stream_clip

src, _ = resolve_torchscript(Path(".assets/yolov8s-world.pt"), (384, 672), Path(".cache/edge-daemon"))
extra = {"config.txt": ""}
module = torch.jit.load(str(src), map_location="cpu", _extra_files=extra)
torch.jit.save(module.half(), ".gpuassets/yolov8s-world-384x672-fp16.torchscript", _extra_files=extra)
settings = load_settings(Path("configs/gpu-streams.yaml"))
settings = settings.model_copy(update={"model": settings.model.model_copy(update={"cache_dir": Path(".gpuassets/cache")})})
for codec in ("h264", "h265"):
    clip = stream_clip(settings, codec, (1920, 1080), 30)
    print(clip, lasting(clip, 4.0 + 8.0 + TRIAL_MARGIN_S))  # what the cameras play at the default 4 + 8 s
PY
# The bench names its clips after the first camera's file; it reads that file only to make missing clips.
printf 'placeholder: the clips are in cache/streams\n' > .gpuassets/vtest.avi
sed -e 's#path: .assets/vtest.avi#path: .gpuassets/vtest.avi#' \
    -e 's#path: .assets/yolov8s-world.pt#path: .gpuassets/yolov8s-world-384x672-fp16.torchscript#' \
    -e 's#cache_dir: .cache/edge-daemon#cache_dir: .gpuassets/cache#' configs/gpu-streams.yaml > .gpuassets/streams.yaml
# .whlmin/: what the streams bench needs, with py-spy for profiling (no Ultralytics or aiohttp), small
# enough to travel with .gpuassets' model in one call (see the note at the top)
rm -rf .whlmin && mkdir .whlmin
for f in .whl/*.whl; do
  case $(basename "$f") in aiohttp*|aiohappyeyeballs*|aiosignal*|frozenlist*|multidict*|propcache*|yarl*|ultralytics*) ;;
    *) cp "$f" .whlmin/ ;;
  esac
done
# .gpuship/: the same wheels unpacked (no py-spy) and pruned, and the broker, each as one xz archive
rm -rf .gpuship /tmp/gpusite && mkdir -p .gpuship /tmp/gpusite
for f in .whlmin/*.whl; do case $(basename "$f") in py_spy*) ;; *) unzip -o -q "$f" -d /tmp/gpusite ;; esac; done
(cd /tmp/gpusite && rm -rf pynvvideocodec-*.data samples benchmarks PyNvVideoCodec/PyNvVideoCodec_121* \
   PyNvVideoCodec/libavformat.so PyNvVideoCodec/libavformat.so.*.*.* PyNvVideoCodec/libavutil.so \
   PyNvVideoCodec/libavutil.so.*.*.*)
tar cJf .gpuship/site.tar.xz -C /tmp/gpusite . && tar cJf .gpuship/mosq.tar.xz -C .gpudeb .
grep -qxF /.gpuship/ .git/info/exclude || echo /.gpuship/ >> .git/info/exclude
# the real demo clip and a one-camera config for `edge-daemon bench` (daemon vs bare, CPU decode)
mkdir -p .gpuassets/real && cp .assets/vtest.avi .gpuassets/real/vtest.avi
sed -e 's#path: .assets/vtest.avi#path: .gpuassets/real/vtest.avi#' \
    -e 's#path: .assets/yolov8s-world.pt#path: .gpuassets/yolov8s-world-384x672-fp16.torchscript#' \
    -e 's#imgsz: \[448, 576\]#imgsz: [384, 672]#' -e 's#    drop_policy: block#    drop_policy: block\n    decode: cpu#' \
    -e 's#cache_dir: .cache/edge-daemon#cache_dir: .gpuassets/cache#' configs/gpu-torch.yaml > .gpuassets/one.yaml
du -sh .whl .whlmin .gpudeb .gpuship .gpuassets
