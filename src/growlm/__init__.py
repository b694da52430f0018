"""growlm: train transformer language models and grow them without losing what they learned."""

from growlm.models import register_with_transformers

__version__ = "0.1.0"

register_with_transformers()
