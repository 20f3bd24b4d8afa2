#!/usr/bin/env python
"""AInnoFace on Detectron2. Detectron2 itself is installed separately (see README.md):
it is not on PyPI, and users who built it from source keep their own build."""

from setuptools import find_packages, setup

BUILTIN = ["scikit-image>=0.19"]
DEPLOY = ["onnx>=1.16", "onnxruntime>=1.18", "openvino>=2024.4"]

setup(
    name="ainnoface_d2",
    version="0.1.0",
    description="AInnoFace face detector (arXiv 1905.01585) as a Detectron2 extension",
    packages=find_packages(include=["ainnoface_d2", "ainnoface_d2.*"]),
    python_requires=">=3.10",
    install_requires=[
        # 2.4: the CPU fused AdamW (ainnoface_d2/solver.py); 2.1: torch.load(mmap=True).
        "torch>=2.4",
        "torchvision>=0.19",  # the torchvision of torch 2.4
        "fvcore>=0.1.5,<0.1.6",
        "iopath>=0.1.7,<0.1.10",
        "pycocotools>=2.0.2",
        "opencv-python-headless>=4.5",
        "numpy",
        "scipy>=1.7",
        "matplotlib",
        "Pillow>=7.1",
        "tqdm",
        "tabulate",
    ],
    extras_require={
        # Runtimes of the exported graph (ainnoface_d2/export): pip install -e '.[deploy]'.
        "deploy": DEPLOY,
        # the built-in face dataset (ainnoface_d2.builtin_faces) is made from scikit-image's data
        "builtin": BUILTIN,
        "test": ["pytest>=7", "ruff==0.17.6"] + DEPLOY + BUILTIN,
    },
)
