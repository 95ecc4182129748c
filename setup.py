"""Maps the design card's top-level folders onto the `tritium.*` import names.

pyproject.toml holds all metadata; this file only computes the package list, which a static
`package-dir` table cannot do for nested packages.
"""

from setuptools import find_packages, setup

FOLDERS = {
    "core": "tritium.core",
    "plugin_host": "tritium.plugin_host",
    "sdk": "tritium.sdk",
    "plugins": "tritium.plugins",
    "protos": "tritium.protos",
}

packages = ["tritium"]
package_dir = {"tritium": "tritium"}
for folder, name in FOLDERS.items():
    package_dir[name] = folder
    packages += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=package_dir, include_package_data=True)
