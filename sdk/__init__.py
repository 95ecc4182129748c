"""What a plugin author imports: base classes, serve(), shared-memory tensors, packaging, conformance."""
