"""The CLIP byte-level BPE tokenizer, id-for-id equal to transformers' `CLIPTokenizer`.

transformers 5 builds `CLIPTokenizer` on the `tokenizers` library with this pipeline, which
is what we reproduce (there is no ftfy step any more, installed or not):

1. normalize: NFC, every run of Unicode White_Space becomes one space, lowercase;
2. special tokens `<|startoftext|>` / `<|endoftext|>` typed in the prompt are cut out of
   the normalized text (so `<|ENDOFTEXT|>` counts too) and map to their ids;
3. pre-tokenize: `'s|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|[^\\s\\p{L}\\p{N}]+`, spaces dropped;
4. map each piece's UTF-8 bytes to printable characters (GPT-2's table) and apply BPE,
   the last symbol carrying the `</w>` end-of-word suffix;
5. `[bos] + ids[: max_length - 2] + [eos]`, padded with the pad token to `max_length`.

We use stdlib `re` and `unicodedata` (Unicode 14 on Python 3.11) for what the reference does
with its own Unicode tables. Checked character by character, they agree on everything
assigned up to Unicode 14 once the reference's older NFC is accounted for (`_NFC_UNKNOWN`);
characters assigned later may tokenize differently.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path

from mlx_flux.tokenizers.common import TokenizedText, frame, read_json, special_config, special_name
from mlx_flux.weights import WeightError


# --- CLIP ---

# Unicode's White_Space property: what `\s` means to the reference's Rust regex. Python's
# `str.isspace` differs (it includes U+001C..U+001F, which the reference treats as symbols).
_WHITE_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_WHITE_SPACE_RUN = re.compile("[" + "".join(sorted(_WHITE_SPACE)) + "]+")
# The reference's NFC tables predate Unicode 10: to it, these later combining marks (and
# U+11930, which composes with U+11935 since Unicode 13) are plain characters, neither
# reordered nor composed. Normalizing the text between them gives the same result.
_NFC_UNKNOWN = re.compile(
    "([\u07fd\u0898-\u089f\u08ca-\u08d3\u09fe\u0c3c\u0d3b\u0d3c\u0eba\u1715\u1abf-\u1ace"
    "\u1df6-\u1dfa\ua82c\U00010d24-\U00010d27\U00010eab\U00010eac\U00010f46-\U00010f50"
    "\U00010f82-\U00010f85\U00011070\U0001133b\U0001145e\U00011839\U0001183a\U0001193d"
    "\U0001193e\U00011943\U000119e0\U00011a34\U00011a47\U00011a99\U00011d42\U00011d44"
    "\U00011d45\U00011d97\U00016ff0\U00016ff1\U0001e130-\U0001e136\U0001e2ae"
    "\U0001e2ec-\U0001e2ef\U00011930])"
)
_CONTRACTIONS = ("s", "t", "re", "ve", "m", "ll", "d")  # after an apostrophe, in regex order
_END_OF_WORD = "</w>"
_CACHE_SIZE = 100_000  # BPE results kept per tokenizer


@lru_cache(maxsize=1 << 16)
def _char_class(ch: str) -> str:
    """'S' white space, 'L' letter (\\p{L}), 'N' number (\\p{N}), 'P' anything else."""
    if ch in _WHITE_SPACE:
        return "S"
    cat = unicodedata.category(ch)[0]
    return cat if cat in "LN" else "P"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> character table: printable Latin-1 bytes stand for themselves and the
    other 68 bytes get chr(256 + n) in increasing byte order, so every piece is visible text."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in keep}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


_BYTE_CHARS = _bytes_to_unicode()


def normalize(text: str) -> str:
    """NFC (as of Unicode 9), collapse white-space runs to one space (no strip), lowercase
    character by character.

    Lowercasing per character matters: `str.lower` turns a word-final Σ into ς, the
    reference (Rust `char::to_lowercase`) always gives σ.
    """
    parts = _NFC_UNKNOWN.split(text)  # the unknown marks land at odd positions, untouched
    text = "".join(p if i % 2 else unicodedata.normalize("NFC", p) for i, p in enumerate(parts))
    text = _WHITE_SPACE_RUN.sub(" ", text)
    return "".join(ch.lower() for ch in text)


def pre_tokenize(text: str) -> list[str]:
    """Split normalized text like the reference regex (leftmost match, alternatives in order)."""
    pieces = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        kind = _char_class(ch)
        if kind == "S":
            i += 1
            continue
        if ch == "'":
            suffix = next((s for s in _CONTRACTIONS if text.startswith(s, i + 1)), None)
            if suffix is not None:
                pieces.append(text[i : i + 1 + len(suffix)])
                i += 1 + len(suffix)
                continue
        if kind == "N":  # digits are always single pieces
            j = i + 1
        else:  # a run of letters, or a run of symbols (apostrophes included)
            j = i + 1
            while j < n and _char_class(text[j]) == kind:
                j += 1
        pieces.append(text[i:j])
        i = j
    return pieces


class CLIPTokenizer:
    """CLIP's BPE tokenizer from a `tokenizer/` folder (vocab.json + merges.txt)."""

    def __init__(
        self,
        vocab: dict[str, int],
        merges: list[tuple[str, str]],
        bos_token: str = "<|startoftext|>",
        eos_token: str = "<|endoftext|>",
        pad_token: str = "<|endoftext|>",
        unk_token: str = "<|endoftext|>",
        max_length: int = 77,
    ):
        self.vocab = vocab
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        for name in {bos_token, eos_token, pad_token, unk_token}:
            if name not in vocab:
                raise ValueError(f"special token {name!r} is not in the CLIP vocabulary")
        self.bos_id, self.eos_id = vocab[bos_token], vocab[eos_token]
        self.pad_id, self.unk_id = vocab[pad_token], vocab[unk_token]
        self.max_length = max_length
        # Literal special tokens in a prompt map to their ids; longest first so neither can
        # shadow a longer one (the reference matches leftmost-longest).
        specials = sorted({bos_token, eos_token}, key=len, reverse=True)
        self._special_split = re.compile("(" + "|".join(map(re.escape, specials)) + ")")
        self._bpe_cache: dict[str, list[int]] = {}

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> CLIPTokenizer:
        """Load vocab.json, merges.txt and the optional special-token / max-length config."""
        folder = Path(folder)
        vocab = read_json(folder / "vocab.json")
        if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
            raise WeightError(f"corrupt tokenizer file (not a token -> id table): {folder / 'vocab.json'}")
        merges = _read_merges(folder / "merges.txt")

        config, max_length = special_config(folder, default_max_length=77, min_length=3)
        try:
            return cls(
                vocab,
                merges,
                bos_token=special_name(config.get("bos_token"), "<|startoftext|>"),
                eos_token=special_name(config.get("eos_token"), "<|endoftext|>"),
                pad_token=special_name(config.get("pad_token"), "<|endoftext|>"),
                unk_token=special_name(config.get("unk_token"), "<|endoftext|>"),
                max_length=max_length,
            )
        except ValueError as e:
            raise WeightError(f"{e}: {folder / 'vocab.json'}") from e

    def _bpe(self, word: str) -> list[int]:
        """Ids of one pre-tokenized piece (already byte-mapped), merging lowest-rank pairs first."""
        ids = self._bpe_cache.get(word)
        if ids is not None:
            return ids
        symbols = [*word[:-1], word[-1] + _END_OF_WORD]
        while len(symbols) > 1:
            pairs = zip(symbols, symbols[1:])
            best = min(pairs, key=lambda p: self.ranks.get(p, len(self.ranks)))
            if best not in self.ranks:
                break
            # Merge every occurrence of the best pair, left to right.
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        ids = [self.vocab.get(s, self.unk_id) for s in symbols]
        if len(self._bpe_cache) >= _CACHE_SIZE:  # keep a long-running app's memory bounded
            self._bpe_cache.clear()
        self._bpe_cache[word] = ids
        return ids

    def content_ids(self, text: str) -> list[int]:
        """Token ids of `text` without bos/eos, truncation or padding."""
        ids: list[int] = []
        for i, part in enumerate(self._special_split.split(normalize(text))):
            if i % 2:  # re.split puts the captured special tokens at odd positions
                ids.append(self.vocab[part])
                continue
            for piece in pre_tokenize(part):
                ids += self._bpe("".join(_BYTE_CHARS[b] for b in piece.encode("utf-8")))
        return ids

    def tokenize(self, text: str, max_length: int | None = None) -> TokenizedText:
        """Tokenize one prompt to exactly `max_length` ids (default: the model's 77).

        The content is cut to `max_length - 2` tokens so that bos and eos always survive.
        """
        max_length = self.max_length if max_length is None else max_length
        return frame(self.content_ids(text), max_length, self.pad_id, bos=self.bos_id, eos=self.eos_id)

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """The `max_length` (default 77) token ids of `text`: bos, content, eos, padding."""
        return self.tokenize(text, max_length).ids


def _read_merges(path: Path) -> list[tuple[str, str]]:
    """The merge rules of merges.txt, in rank order (a `#version` header line is skipped)."""
    if not path.is_file():
        raise WeightError(f"missing tokenizer file: {path}")
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise WeightError(f"corrupt tokenizer file (not UTF-8): {path}") from e
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    merges = []
    for line in lines:
        line = line.rstrip("\r")
        if not line:
            continue
        pair = line.split(" ")
        if len(pair) != 2:
            raise WeightError(f"corrupt tokenizer file (bad merge {line!r}): {path}")
        merges.append((pair[0], pair[1]))
    return merges
