"""JAX as the physics needs it: float64 enabled (FIRE reaches max|F| < 1e-10 and the Hessian is
assembled in float64; the stochastic phases ask for float32 themselves), and the persistent XLA
compilation cache. Every physics module imports this one first."""
import os
import warnings

import jax

jax.config.update("jax_enable_x64", True)
# jax-md's neighbour-list scatter mixes int64 and int32 indices under x64; harmless, but noisy.
warnings.filterwarnings("ignore", message="scatter inputs have incompatible types")
from jax.experimental.compilation_cache import compilation_cache   # noqa: E402


def enable_compilation_cache(cache_dir, min_compile_seconds=0.5):
    """Keep compiled XLA programs on disk (in `cache_dir`; "" turns the cache off) so a second
    run (or worker) skips compilation; programs that compile faster than `min_compile_seconds`
    are not kept. JAX opens its cache folder once, at the first compilation after it is set: a
    change of folder resets it, or the old one would silently stay in use."""
    path = os.path.abspath(cache_dir) if cache_dir else None
    if jax.config.jax_compilation_cache_dir != path:
        jax.config.update("jax_compilation_cache_dir", path)
        compilation_cache.reset_cache()
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_seconds)

