"""The chain optimizer: measurements, bottleneck detection, suggestions, recorded inputs and replay."""
