"""Platform-agnostic core: what a photoshoot is. Imports no chat library and no backend."""
