"""Error types of the plugin host. Every message names the plugin (and its manifest) at fault."""

from __future__ import annotations


class PluginError(RuntimeError):
    """Base of every plugin-host error; `plugin` is the plugin's name (or its folder if unknown)."""

    def __init__(self, plugin: str, message: str) -> None:
        super().__init__(f"plugin {plugin!r}: {message}")
        self.plugin = plugin
        self.reason = message


class ManifestError(PluginError):
    """A plugin.toml that is missing, unreadable or invalid; the message names the file and field."""


class PluginIntegrityError(PluginError):
    """A package file whose sha256 differs from the manifest's, or a file the manifest does not list."""


class IncompatiblePluginError(PluginError):
    """The plugin speaks a contract or launch protocol this core does not, or needs another core version.
    The message names both versions."""


class PluginLoadError(PluginError):
    """A plugin that was asked for cannot be used (not found, refused by the allow-list, broken)."""


class PluginStartError(PluginError):
    """The plugin process exited or failed its health check before it became ready."""


class PluginHandshakeError(PluginStartError):
    """The plugin printed no handshake line in time, or one that does not follow the format."""


class PluginProtocolError(PluginError):
    """The plugin answered, but with something the contract does not allow (wrong identity, malformed or
    oversized message, tensor of the wrong shape or dtype)."""


class PluginCallError(PluginError):
    """A call failed in a way retrying will not fix (the plugin rejected the request)."""


class PluginUnavailableError(PluginError):
    """No instance can take the call: the plugin keeps crashing (circuit open) and has no fallback,
    or it was stopped."""


class SignatureError(PluginError):
    """A package whose signature is missing, made by an unknown or revoked key, does not match the
    manifest or the files, or is older than a version already seen (rollback). The message names the
    plugin, the file at fault and the reason."""


class SandboxError(PluginError):
    """The kernel cannot give a confinement that the sandbox configuration requires; the message names
    the confinement that is missing."""
