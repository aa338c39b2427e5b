import os
from pathlib import Path

from setuptools import find_packages, setup

# The CUDA NMS kernel is compiled at first use (detector/ops/nms_extension.py). Where CUDA is
# present it can be built ahead of time instead:
#   DETECTOR_BUILD_CUDA=1 pip install --no-build-isolation -e .
# (--no-build-isolation: the build needs the installed torch).
ext_modules, cmdclass = [], {}
if os.environ.get("DETECTOR_BUILD_CUDA") == "1":
    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    ext_modules = [
        CUDAExtension(
            "detector._nms_cuda",
            ["detector/ops/csrc/nms.cpp", "detector/ops/csrc/nms_kernel.cu"],
            extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3", "--fmad=false"]},
        )
    ]
    cmdclass = {"build_ext": BuildExtension}

setup(
    name="detector",
    version="0.1.0",
    description="YOLO-style object detection and pedestrian tracking on PyTorch",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["detector", "detector.*"]),
    # The configs ship inside the package: `detector train yolox_s` works from a wheel.
    package_data={
        "detector.ops": ["csrc/*.cpp", "csrc/*.cu"],
        "detector": ["configs/*.yaml", "configs/_base_/*/*.yaml"],
    },
    entry_points={"console_scripts": ["detector = detector.cli:main"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
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
        "onnx>=1.16",
        "onnxruntime>=1.18",
        # Torch-Pruning (MIT): the coupled-channel dependency graph behind `detector prune`.
        "torch-pruning==1.6.1",
    ],
    # HOTA: TrackEval asks for opencv-python, whose cv2 would overwrite opencv-python-headless's,
    # and its metrics need neither: install it with `pip install --no-deps trackeval tabulate`
    # (make install does). Without it, MOT metrics simply have no HOTA.
    extras_require={"dev": ["pytest>=8", "pytest-xdist>=3.5", "ruff>=0.6", "hypothesis>=6.100"]},
    classifiers=["License :: OSI Approved :: Apache Software License", "Programming Language :: Python :: 3"],
)
