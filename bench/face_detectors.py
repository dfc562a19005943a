"""Face detectors on packaged photographs: how often each counts the faces right, and how fast.

    python -m bench.face_detectors

Photos: scikit-image's astronaut, camera (the cameraman), chelsea (a cat), coffee and rocket
brought to >= 1024 px, the astronaut and the cameraman side by side, the astronaut
blurred (radius 6) and darkened (x0.2). Prints, per detector, the photos counted right, the
mean time per photo relative to the Haar cascade's (measured in the same run) and each miss.
The README's "Photo inspection" section quotes a run of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PIL import Image

from backends.local.face_detect import DlibDetector, HaarDetector, dlib_installed
from tests.photos import astronaut, blurred, cameraman, cat, coffee, darkened, packaged, two_people

CASES: dict[str, tuple[Callable[[], Image.Image], int]] = {
    "astronaut": (astronaut, 1),
    "cameraman": (cameraman, 1),
    "chelsea (cat)": (cat, 0),
    "coffee": (coffee, 0),
    "rocket": (lambda: packaged("rocket"), 0),
    "two people side by side": (two_people, 2),
    "astronaut blurred": (lambda: blurred(astronaut(), 6), 1),
    "astronaut darkened": (lambda: darkened(astronaut()), 1),
}


def main() -> None:
    photos = {name: (make(), want) for name, (make, want) in CASES.items()}
    detectors = {"haar": HaarDetector()}
    if dlib_installed():
        detectors["dlib"] = DlibDetector()
    baseline = None
    for name, detector in detectors.items():
        right, misses = 0, []
        started = time.perf_counter()
        for photo_name, (photo, want) in photos.items():
            found = len(detector.detect(photo))
            right += found == want
            if found != want:
                misses.append(f"{photo_name}: {found} (want {want})")
        per_photo = (time.perf_counter() - started) / len(photos)
        baseline = baseline or per_photo
        print(
            f"{name:5s} {right}/{len(photos)} right, {per_photo * 1000:.0f} ms a photo"
            f" ({per_photo / baseline:.2f}x haar); misses: {'; '.join(misses) or 'none'}"
        )


if __name__ == "__main__":
    main()
