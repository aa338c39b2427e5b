from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="detector",
    version="0.1.0",
    description="YOLO-style object detection and pedestrian tracking on PyTorch",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["detector", "detector.*"]),
    install_requires=[
        "torch==2.14.1",
        "torchvision==0.29.1",
        "numpy>=1.24",
        "pyyaml>=6.0",
        "tqdm>=4.60",
        "opencv-python-headless>=4.8",
        "albumentations>=2.0,<3",
        "pycocotools>=2.0.7",
        "scipy>=1.10",
        "matplotlib>=3.7",
        "motmetrics>=1.4.0",
    ],
    # HOTA: TrackEval asks for opencv-python, whose cv2 would overwrite opencv-python-headless's,
    # and its metrics need neither: install it with `pip install --no-deps trackeval tabulate`
    # (make install does). Without it, MOT metrics simply have no HOTA.
    extras_require={"dev": ["pytest>=8", "ruff>=0.6", "hypothesis>=6.100"]},
    classifiers=["License :: OSI Approved :: Apache Software License", "Programming Language :: Python :: 3"],
)
