"""The engine: model formats, tokenizer, forward pass, sampler, engine loop, API, CLI."""
