#!/bin/sh
# Run HERE (not on the device): copies the pure-Python packages that the device image lacks
# (diffusers 0.42.1, aiosqlite, importlib_metadata) from .venv into .benchdeps/, which the
# device call carries. ~30 MB, under the 64 MiB that a call may carry.
set -eu
cd "$(dirname "$0")/.."
site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
grep -qx '/.benchdeps/' .git/info/exclude 2>/dev/null || echo '/.benchdeps/' >> .git/info/exclude
rm -rf .benchdeps && mkdir .benchdeps
for pkg in diffusers aiosqlite importlib_metadata; do
    cp -r "$site/$pkg" .benchdeps/
    cp -r "$site/$pkg"-*.dist-info .benchdeps/
done
find .benchdeps -name __pycache__ -prune -exec rm -rf {} +
du -sh .benchdeps
