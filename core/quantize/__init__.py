"""`tritium quantize`: turn a BitNet checkpoint (HF folder, packed or unpacked, or a GGUF file) into a GGUF
file of another type, tensor by tensor, through a quantizer plugin; measure what it cost and saved."""
