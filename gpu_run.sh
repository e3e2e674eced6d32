set -e
[ -d .cache/gpusite/trackers ] || { rm -rf .cache/gpusite; mkdir -p .cache/gpusite && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .cache/gpusite .whl/*.whl; }
export PYTHONPATH=$PWD/.cache/gpusite:$PWD YOLO_CONFIG_DIR=/tmp/yolo EDGE_ASSETS_DIR=$PWD/.gpuassets
python3 -c "import trackers, supervision; print('trackers', trackers.__version__ if hasattr(trackers,'__version__') else '?')"
python3 -m pytest --noconftest -m gpu -p no:cacheprovider -q -s tests/$1 2>&1 | tail -${2:-30}
