"""The chain optimizer: profiles, bottlenecks, suggestions, recorded inputs and replay."""
