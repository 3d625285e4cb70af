#!/usr/bin/env bash
# Download, here, the wheels the GPU machine lacks (Python 3.12, x86-64), into the git-ignored .whl/.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PLATFORMS="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any"
for pkg in papermill==2.7.0 nbformat==5.11.1 nbclient ipykernel==7.4.0 jupyter-client jupyter-core traitlets \
           pyzmq tornado comm debugpy ipython matplotlib-inline nest-asyncio2 psutil entrypoints tenacity \
           ansicolors fastjsonschema jsonschema jsonschema-specifications referencing rpds-py attrs \
           jupytext==1.19.6 markdown-it-py mdit-py-plugins mdurl crc32c protobuf animal-shape-mnist==0.39 \
           platformdirs ipython-pygments-lexers jedi parso pexpect ptyprocess prompt-toolkit wcwidth stack-data \
           executing asttokens pure-eval; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLATFORMS \
    -d .whl "$pkg" || python3 -m pip download -q --no-deps --no-binary=:none: -d .whl "$pkg"
done
# tfrecord 1.14.6 (what environment.yml pins; older ones carry protobuf code that protobuf >= 4 refuses) is an sdist:
# build its pure-Python wheel here.
python3 -m pip wheel -q --no-deps -w .whl tfrecord==1.14.6
ls .whl
