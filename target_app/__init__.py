"""target_app: the small, instrumented Flask service that autofix watches and heals.

It exists to fail on purpose: ``POST /fault/<kind>`` makes it crash, hang, error, slow
down, burn CPU or leak memory, so the whole detection-to-recovery loop can be exercised.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
