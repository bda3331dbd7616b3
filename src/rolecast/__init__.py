"""rolecast: an LLM plays a fictional character the way it speaks in its canon.

Importing this package is cheap: heavy libraries (embedders, llama.cpp) load
only when the part that needs them is used.
"""

__version__ = "0.1.0"
