"""Sample photos shipped with edgevision (licences in LICENSES.md), with the answer each should get.

The demo, the web page and the tests classify these offline. Each photo was chosen so that one ImageNet class
names what it shows; `cifar10` is the CIFAR-10 class when there is one (most photos show nothing CIFAR-10 knows).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

SAMPLES_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class SamplePhoto:
    file: str
    shows: str  # in words, for the page and the demo
    imagenet: str  # the expected top-1 of an ImageNet classifier (the label as imagenet-mobilenetv2 names it)
    cifar10: Optional[str] = None  # the CIFAR-10 class, when the photo shows one

    @property
    def path(self) -> Path:
        return SAMPLES_DIR / self.file


SAMPLES = (
    SamplePhoto("chelsea.jpg", "a cat", "Egyptian cat", "cat"),
    SamplePhoto("coffee.jpg", "a cup of espresso", "espresso"),
    SamplePhoto("rocket.jpg", "a rocket on its launch pad", "missile"),
    SamplePhoto("camera.jpg", "a photographer with a camera on a tripod", "tripod"),
)


def sample_photos() -> List[SamplePhoto]:
    """The shipped photos that are present in this installation."""
    return [s for s in SAMPLES if s.path.is_file()]
