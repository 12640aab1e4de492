"""Packaging of tb-gradients: the callback and the "Gradients" TensorBoard plugin."""

import pathlib

from setuptools import find_packages
from setuptools import setup

HERE = pathlib.Path(__file__).parent
VERSION = {}
for line in (HERE / "tb_gradients" / "__init__.py").read_text().splitlines():
    if line.startswith("__version__"):
        exec(line, VERSION)

# The frontend is a tree of data (ES modules, CSS): each of its folders is
# shipped as a package, `tb_gradients.frontend[.lib|.views...]`, so that
# setuptools knows its files and says nothing about undeclared data.
FRONTEND_PACKAGES = sorted(
    ".".join(folder.relative_to(HERE).parts)
    for folder in [HERE / "tb_gradients" / "frontend",
                   *(HERE / "tb_gradients" / "frontend").rglob("*")]
    if folder.is_dir() and not folder.name.startswith((".", "__")))

setup(
    name="tb-gradients",
    version=VERSION["__version__"],
    description=("Gradient logging for Keras 3 on TensorFlow, JAX and PyTorch "
                 "(the return of write_grads) and a Gradients tab for TensorBoard"),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=sorted(set(find_packages(include=["tb_gradients",
                                               "tb_gradients.*"])
                        + FRONTEND_PACKAGES)),
    package_data={package: ["*.js", "*.css"]
                  for package in FRONTEND_PACKAGES},
    include_package_data=False,
    python_requires=">=3.9",
    install_requires=[
        "tensorboard>=2.16",
        "numpy>=1.23",
    ],
    extras_require={
        # The callback needs TensorFlow; the plugin alone (a TensorBoard
        # server reading logs) does not.
        "tf": ["tensorflow>=2.16", "keras>=3.3"],
        # Keras's JAX backend (TensorFlow still writes the event files)
        "jax": ["tensorflow>=2.16", "keras>=3.10", "jax>=0.4.30"],
        "torch": ["tensorflow>=2.16", "keras>=3.10", "torch>=2.1"],
        # `reader` series as DataFrames (`SourceSeries.to_pandas`).
        "pandas": ["pandas>=1.5"],
    },
    entry_points={
        "tensorboard_plugins": [
            "gradients = tb_gradients.plugin:GradientsLoader",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Framework :: TensorFlow",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
