"""Plugin launcher: discovery, manifest, signature, sandbox, launch, handshake, supervision."""
