"""Text tokenizers for FLUX's two text encoders, with ids equal to transformers'.

`CLIPTokenizer` reads a repository's `tokenizer/` folder (77 ids for the CLIP encoder),
`T5Tokenizer` its `tokenizer_2/` folder (256 or 512 ids for T5).
"""

from mlx_flux.tokenizers.clip import CLIPTokenizer
from mlx_flux.tokenizers.common import TokenizedText
from mlx_flux.tokenizers.t5 import T5Tokenizer

__all__ = ["CLIPTokenizer", "T5Tokenizer", "TokenizedText"]
