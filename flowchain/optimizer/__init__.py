"""The chain optimizer: what the engine runs for optimized steps, and what it measures.

Step options (a chain's ``parallel``, ``cache`` and ``async``) run through :mod:`.parallel`,
:mod:`.cache` and :mod:`.concurrency`, built once per runner by :mod:`.step_runtime`; sampled
per-step profiles come from :mod:`.profiling` and are stored by :mod:`.profile_store`.
Recorded inputs (:mod:`.recorded_inputs`) feed replay and verification. Bottleneck detection,
suggestions and their verification: :mod:`.detectors`, :mod:`.suggestions`, :mod:`.optimizer`.
"""
