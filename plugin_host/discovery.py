"""Find plugin packages in layers, later layers overriding earlier ones by plugin name.

Layers, lowest precedence first:
  builtin      plugins/*/plugin.toml shipped with the core
  system       $TRITIUM_SYSTEM_PLUGIN_DIR or /etc/tritium/plugins
  user         $TRITIUM_USER_PLUGIN_DIR or ~/.config/tritium/plugins
  entry_point  pip-installed packages advertising the entry-point group `tritium.plugins`
               (the entry point names a Python package whose folder holds plugin.toml; it is located,
               never imported — the core does not run plugin code)
  path         $TRITIUM_PLUGIN_PATH (os.pathsep-separated; like $PATH, an earlier entry wins)

A layer folder holds package folders (each with plugin.toml) or package archives (.tar.gz, .tgz,
.tar, .zip; see archive.py), or is itself a package folder or archive. The log
says which manifest won each name. A manifest that does not load is kept as a *failed* entry under
its folder's name, overriding earlier layers: a broken plugin is an error naming it and why, never a
silent fallback to another copy. An optional allow-list ($TRITIUM_PLUGINS_ALLOW, comma-separated)
keeps only the named plugins.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from .archive import is_archive, unpack
from .errors import ManifestError, PluginLoadError
from .manifest import MANIFEST_NAME, Manifest, load_manifest

log = logging.getLogger("tritium.plugin_host.discovery")

ENTRY_POINT_GROUP = "tritium.plugins"
LAYERS = ("builtin", "system", "user", "entry_point", "path")
BUILTIN_DIR = Path(__file__).resolve().parents[1] / "plugins"


@dataclass
class DiscoveredPlugin:
    """One plugin name as discovery resolved it: the winning manifest (or why it failed to load)."""

    name: str
    layer: str
    path: Path
    manifest: Manifest | None
    error: str = ""
    # (layer, manifest path) of the copies this one overrides, earliest first.
    overrides: list[tuple[str, Path]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True if the manifest loaded."""
        return self.manifest is not None


@dataclass
class Discovery:
    """The result of discovery: plugins by name, and what the allow-list left out."""

    plugins: dict[str, DiscoveredPlugin]
    excluded: list[str] = field(default_factory=list)

    def require(self, name: str) -> Manifest:
        """The manifest of plugin `name`; PluginLoadError says why it cannot be used."""
        found = self.plugins.get(name)
        if found is None:
            why = "excluded by the allow-list" if name in self.excluded else "not found in any plugin layer"
            raise PluginLoadError(name, why)
        if found.manifest is None:
            raise PluginLoadError(name, f"{found.path} ({found.layer} layer) failed to load: {found.error}")
        return found.manifest

    def errors(self) -> list[DiscoveredPlugin]:
        """The plugins whose manifest failed to load."""
        return [p for p in self.plugins.values() if not p.ok]


def default_layer_dirs(env: dict[str, str] | None = None) -> dict[str, list[Path]]:
    """The folders of each directory layer, from the environment (or the given mapping)."""
    env = os.environ if env is None else env
    path_entries = [Path(p) for p in env.get("TRITIUM_PLUGIN_PATH", "").split(os.pathsep) if p]
    return {
        "builtin": [BUILTIN_DIR],
        "system": [Path(env.get("TRITIUM_SYSTEM_PLUGIN_DIR", "/etc/tritium/plugins"))],
        "user": [Path(env.get("TRITIUM_USER_PLUGIN_DIR", Path.home() / ".config" / "tritium" / "plugins"))],
        # An earlier PATH entry must win, so the list is applied last-to-first.
        "path": list(reversed(path_entries)),
    }


def _manifests_in(folder: Path) -> list[Path | ManifestError]:
    """plugin.toml paths of a layer entry: a package folder, an archive, or a folder of either; an
    archive that cannot be unpacked gives its ManifestError instead."""
    if (folder / MANIFEST_NAME).is_file():
        return [folder / MANIFEST_NAME]
    if is_archive(folder):
        return [_unpacked(folder)]
    if not folder.is_dir():
        return []
    found = []
    for p in sorted(folder.iterdir()):
        if (p / MANIFEST_NAME).is_file():
            found.append(p / MANIFEST_NAME)
        elif is_archive(p):
            found.append(_unpacked(p))
    return found


def _unpacked(archive: Path) -> Path | ManifestError:
    try:
        return unpack(archive) / MANIFEST_NAME
    except ManifestError as exc:
        exc.path = archive
        return exc


def entry_point_manifests(group: str = ENTRY_POINT_GROUP) -> list[Path]:
    """plugin.toml files of installed distributions advertising `group`, located without importing."""
    found = []
    for ep in metadata.entry_points(group=group):
        rel = ep.module.replace(".", "/") + "/" + MANIFEST_NAME
        located = Path(str(ep.dist.locate_file(rel))) if ep.dist is not None else None
        if located is None or not located.is_file():
            log.error(
                "entry point %s = %s (group %s): no %s found at %s",
                ep.name,
                ep.value,
                group,
                MANIFEST_NAME,
                located,
            )
            found.append(located or Path(rel))
            continue
        found.append(located)
    return found


def discover(
    layer_dirs: dict[str, list[Path]] | None = None,
    *,
    allow: list[str] | None = None,
    entry_points: bool = True,
    env: dict[str, str] | None = None,
) -> Discovery:
    """Resolve every plugin name across the layers; see the module docstring for the rules."""
    env = os.environ if env is None else env
    dirs = default_layer_dirs(env) if layer_dirs is None else layer_dirs
    if allow is None and env.get("TRITIUM_PLUGINS_ALLOW"):
        allow = [n.strip() for n in env["TRITIUM_PLUGINS_ALLOW"].split(",") if n.strip()]
    plugins: dict[str, DiscoveredPlugin] = {}
    for layer in LAYERS:
        if layer == "entry_point":
            manifests = entry_point_manifests() if entry_points else []
        else:
            manifests = [m for d in dirs.get(layer, []) for m in _manifests_in(d)]
        for path in manifests:
            try:
                if isinstance(path, ManifestError):
                    raise path
                manifest = load_manifest(path)
                entry = DiscoveredPlugin(manifest.name, layer, manifest.path, manifest)
            except ManifestError as exc:
                where = exc.path if isinstance(path, ManifestError) else path
                name = exc.plugin if isinstance(path, ManifestError) else path.parent.name
                log.error("plugin manifest %s (%s layer) failed to load: %s", where, layer, exc.reason)
                entry = DiscoveredPlugin(name, layer, where, None, error=exc.reason)
            previous = plugins.get(entry.name)
            if previous is not None:
                entry.overrides = [*previous.overrides, (previous.layer, previous.path)]
                log.info(
                    "plugin %s: %s (%s layer) overrides %s (%s layer)",
                    entry.name,
                    entry.path,
                    layer,
                    previous.path,
                    previous.layer,
                )
            plugins[entry.name] = entry
    excluded: list[str] = []
    if allow is not None:
        excluded = sorted(n for n in plugins if n not in allow)
        for n in excluded:
            log.info("plugin %s (%s) is not in the allow-list; skipped", n, plugins[n].path)
            del plugins[n]
        for n in allow:
            if n not in plugins:
                log.warning("allow-listed plugin %s was not found in any layer", n)
    for entry in plugins.values():
        if entry.ok:
            log.info(
                "plugin %s %s (%s) from %s layer: %s",
                entry.name,
                entry.manifest.version,
                entry.manifest.kind,
                entry.layer,
                entry.path,
            )
    return Discovery(plugins, excluded)
