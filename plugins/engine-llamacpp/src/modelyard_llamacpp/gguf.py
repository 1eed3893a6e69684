"""The GGUF header reader lives in the core (``modelyard.gguf``), which also reads GGUF headers to
launch a file that has no catalog entry; this module keeps the plugin's import path."""

from modelyard.gguf import GGML_TYPES, ArrayInfo, GGUFError, GGUFFile, TensorInfo, read_gguf

__all__ = ["GGML_TYPES", "ArrayInfo", "GGUFError", "GGUFFile", "TensorInfo", "read_gguf"]
