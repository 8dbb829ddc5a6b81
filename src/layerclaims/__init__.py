"""layerclaims: published claims about language-model layers as executable, reproducible tests.

Data flows one way: text/words -> tokenizer -> model (``models``) -> ``extract`` -> ``studies`` ->
result (saved) -> ``claims`` -> verdicts. ``metrics`` are pure functions over arrays.
"""

__version__ = "0.1.0"
