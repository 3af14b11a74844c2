"""The T5 v1.1 SentencePiece tokenizer, id-for-id equal to transformers' `T5TokenizerFast`.

transformers 5 runs T5 through the `tokenizers` library, which differs from running
spiece.model through `sentencepiece` as is in three ways, all reproduced here:

1. special tokens typed in the prompt (`</s>`, `<pad>`, `<unk>`, `<extra_id_N>`) are cut out
   of the raw text and mapped to their ids;
2. normalization uses spiece.model's own table, but looked up one grapheme at a time: a
   short grapheme (under 6 UTF-8 bytes) whose start is in the table is replaced *whole* by
   that start's normalization, so e.g. "Ａ" + combining acute becomes plain "A";
3. words are split at every Unicode White_Space character and at "▁" (sentencepiece's table
   turns most white space into spaces, but would keep e.g. U+0085 or U+2028 inside a word).

Each word, prefixed with "▁", then goes through `sentencepiece`'s unigram model, loaded with
its normalizer switched off because step 2 has already been done.
"""

from __future__ import annotations

import re
import struct
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import sentencepiece

from mlx_flux.tokenizers.common import TokenizedText, frame, special_config, special_name
from mlx_flux.weights import WeightError

_EXTRA_IDS = 100  # sentinel tokens <extra_id_0..99>, numbered down from the top of the vocab
_WORD_BOUNDARY = "▁"  # U+2581, SentencePiece's visible space
# Unicode's White_Space property, which is what the reference splits words on.
_WHITE_SPACE_RUN = re.compile(
    "[\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+"
)
_PIECE = re.compile(f"{_WORD_BOUNDARY}[^{_WORD_BOUNDARY}]*")  # each "▁" starts a new piece


# --- SentencePiece model file (protobuf) ---


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def _fields(buf: bytes) -> Iterator[tuple[int, bytes | int, bytes]]:
    """(field number, value, raw bytes of the whole field) of a serialized protobuf message."""
    i = 0
    while i < len(buf):
        start = i
        key, i = _varint(buf, i)
        wire = key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i : i + n], i + n
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            value, i = buf[i : i + n], i + n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if i > len(buf):
            raise ValueError("truncated protobuf message")
        yield key >> 3, value, buf[start:i]


def _split_normalizer(model: bytes) -> tuple[bytes, bytes]:
    """Return the model with an identity normalizer, and the original precompiled charsmap.

    ModelProto field 3 is the NormalizerSpec; in it, field 2 is the charsmap. The identity
    spec keeps escape_whitespaces (field 5) and turns off add_dummy_prefix (3) and
    remove_extra_whitespaces (4): we hand over words that already start with "▁".
    """
    charsmap = b""
    kept = bytearray()
    for number, value, raw in _fields(model):
        if number != 3:
            kept += raw
        elif isinstance(value, bytes):
            charsmap = next((v for n, v, _ in _fields(value) if n == 2 and isinstance(v, bytes)), b"")
    # Field keys are (number << 3 | wire type): 0x0a = name (8 bytes follow), 0x18, 0x20 and
    # 0x28 = fields 3, 4 and 5 as varints.
    identity = b"\x0a\x08identity" + b"\x18\x00" + b"\x20\x00" + b"\x28\x01"
    kept += b"\x1a" + _encode_varint(len(identity)) + identity
    return bytes(kept), charsmap


class _Charsmap:
    """SentencePiece's precompiled normalization table: a Darts double-array trie over UTF-8
    byte strings whose values point into a blob of NUL-terminated replacements."""

    def __init__(self, blob: bytes):
        if not blob:  # an identity normalizer: nothing is ever replaced
            self.units, self.replacements = (), b""
            return
        (size,) = struct.unpack_from("<I", blob)
        if size % 4 or 4 + size > len(blob):
            raise ValueError("bad charsmap size")
        self.units = struct.unpack_from(f"<{size // 4}I", blob, 4)
        self.replacements = blob[4 + size :]

    def lookup(self, text: str) -> str | None:
        """Replacement for the shortest key that is a prefix of `text`, or None."""
        units = self.units
        if not units:
            return None
        # Darts unit layout: bits 0-7 label, bit 8 has-leaf, bits 10+ offset (scaled by bit 9).
        unit = units[0]
        pos = (unit >> 10) << ((unit & 0x200) >> 6)
        for byte in text.encode("utf-8"):
            pos ^= byte
            unit = units[pos]
            if unit & 0x800000FF != byte:
                return None
            pos ^= (unit >> 10) << ((unit & 0x200) >> 6)
            if unit & 0x100:
                start = units[pos] & 0x7FFFFFFF
                end = self.replacements.index(b"\0", start)
                return self.replacements[start:end].decode("utf-8")
        return None


# --- Grapheme clusters (only as far as normalization can tell them apart) ---

# Grapheme_Extend characters that are not Mn/Me, plus the emoji skin-tone modifiers.
_OTHER_EXTEND = frozenset(
    [0x09BE, 0x09D7, 0x0B3E, 0x0B57, 0x0BBE, 0x0BD7, 0x0CC2, 0x0CD5, 0x0CD6, 0x0D3E, 0x0D57]
    + [0x0DCF, 0x0DDF, 0x1B35, 0x200C, 0x302E, 0x302F, 0xFF9E, 0xFF9F, 0x1133E, 0x11357]
    + [0x114B0, 0x114BD, 0x115AF, 0x11930, 0x1D165, *range(0x1D16E, 0x1D173)]
    + [*range(0xE0020, 0xE0080), *range(0x1F3FB, 0x1F400)]
)
_PREPEND = frozenset(
    [*range(0x0600, 0x0606), 0x06DD, 0x070F, 0x0890, 0x0891, 0x08E2, 0x0D4E, 0x110BD, 0x110CD]
    + [0x111C2, 0x111C3, 0x1193F, 0x11941, 0x11A3A, *range(0x11A84, 0x11A8A), 0x11D46]
)
# Spacing combining marks (Mc) that do not join the previous character.
_NOT_SPACING_MARK = frozenset(
    [0x102B, 0x102C, 0x1038, *range(0x1062, 0x1065), *range(0x1067, 0x106E), 0x1083]
    + [*range(0x1087, 0x108D), 0x108F, *range(0x109A, 0x109D), 0x1A61, 0x1A63, 0x1A64]
    + [0xAA7B, 0xAA7D, 0x11720, 0x11721]
)


@lru_cache(maxsize=1 << 16)
def _break_class(ch: str) -> str:
    """The Grapheme_Cluster_Break class of a character (UAX #29), from its general category."""
    cp = ord(ch)
    if ch in "\r\n":
        return ch
    if cp == 0x200D:
        return "ZWJ"
    cat = unicodedata.category(ch)
    if cat in ("Mn", "Me") or cp in _OTHER_EXTEND:
        return "Extend"
    if cp in _PREPEND:
        return "Prepend"
    if cat in ("Cc", "Cf", "Zl", "Zp"):
        return "Control"
    if (cat == "Mc" and cp not in _NOT_SPACING_MARK) or cp in (0x0E33, 0x0EB3):
        return "SpacingMark"
    return "Other"


def _joins(before: str, after: str) -> bool:
    """Whether two adjacent break classes stay in one grapheme (UAX #29 rules GB3-5, GB9-9b).

    The Hangul syllable, emoji ZWJ and flag rules are left out: the clusters they build are
    at least 6 UTF-8 bytes long, and the reference normalizes those character by character,
    so where they split makes no difference.
    """
    if before == "\r" and after == "\n":
        return True
    if before in ("Control", "\r", "\n") or after in ("Control", "\r", "\n"):
        return False
    return after in ("Extend", "ZWJ", "SpacingMark") or before == "Prepend"


_BREAK_CLASSES = ("\r", "\n", "ZWJ", "Extend", "Prepend", "Control", "SpacingMark", "Other")
_JOINING = frozenset((a, b) for a in _BREAK_CLASSES for b in _BREAK_CLASSES if _joins(a, b))


def _graphemes(text: str) -> Iterator[str]:
    classes = list(map(_break_class, text))
    start = 0
    for i in range(1, len(text)):
        if (classes[i - 1], classes[i]) not in _JOINING:
            yield text[start:i]
            start = i
    if text:
        yield text[start:]


# --- Tokenizer ---


class T5Tokenizer:
    """T5's SentencePiece unigram tokenizer from a `tokenizer_2/` folder (spiece.model).

    No bos; eos is appended, pad is 0. Sentinels `<extra_id_N>` live above the 32000
    SentencePiece ids, at 32099 - N.
    """

    def __init__(
        self,
        model_proto: bytes,
        specials: dict[str, int] | None = None,
        eos_token: str = "</s>",
        pad_token: str = "<pad>",
        max_length: int = 512,
    ):
        """Build from the bytes of spiece.model; `specials` maps typed-in special tokens to ids
        (default: T5's pad 0, eos 1, unk 2 and the 100 sentinels above the vocabulary)."""
        proto, charsmap = _split_normalizer(model_proto)
        self.charsmap = _Charsmap(charsmap)
        self.sp = sentencepiece.SentencePieceProcessor(model_proto=proto)
        if specials is None:
            n = self.sp.get_piece_size()
            specials = {f"<extra_id_{i}>": n + _EXTRA_IDS - 1 - i for i in range(_EXTRA_IDS)}
            specials |= {name: self.sp.piece_to_id(name) for name in ("<pad>", "</s>", "<unk>")}
        if eos_token not in specials or pad_token not in specials:
            raise ValueError(f"eos {eos_token!r} or pad {pad_token!r} has no id")
        self.specials = specials
        self._grapheme_cache: dict[str, str] = {}
        self.eos_id, self.pad_id = specials[eos_token], specials[pad_token]
        self.max_length = max_length
        # Longest first, so `<extra_id_10>` is not read as `<extra_id_1>` followed by "0>".
        names = sorted(specials, key=len, reverse=True)
        self._special_split = re.compile("(" + "|".join(map(re.escape, names)) + ")")

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> T5Tokenizer:
        """Load spiece.model and, when present, the special tokens of tokenizer_config.json."""
        folder = Path(folder)
        path = folder / "spiece.model"
        if not path.is_file():
            raise WeightError(f"missing tokenizer file: {path}")
        config, max_length = special_config(folder, default_max_length=512, min_length=2)
        # transformers takes the ids of typed-in special tokens from this table when present.
        decoder = config.get("added_tokens_decoder")
        specials = None
        if isinstance(decoder, dict) and decoder:
            specials = {special_name(v, ""): int(k) for k, v in decoder.items()}
            specials.pop("", None)
        try:
            return cls(
                path.read_bytes(),
                specials,
                eos_token=special_name(config.get("eos_token"), "</s>"),
                pad_token=special_name(config.get("pad_token"), "<pad>"),
                max_length=max_length,
            )
        except (ValueError, IndexError, struct.error, RuntimeError, OSError) as e:
            raise WeightError(f"corrupt tokenizer file ({e}): {path}") from e

    def normalize(self, text: str) -> str:
        """The reference's normalization: the charsmap applied grapheme by grapheme."""
        cache = self._grapheme_cache
        out = []
        for grapheme in _graphemes(text):
            normalized = cache.get(grapheme)
            if normalized is None:
                if len(cache) >= 100_000:  # keep a long-running app's memory bounded
                    cache.clear()
                normalized = cache[grapheme] = self._normalize_grapheme(grapheme)
            out.append(normalized)
        return "".join(out)

    def _normalize_grapheme(self, grapheme: str) -> str:
        lookup = self.charsmap.lookup
        if len(grapheme.encode("utf-8")) < 6:
            # Quirk of the reference: the whole grapheme becomes the replacement of its
            # shortest matching prefix, dropping any marks after that prefix.
            replacement = lookup(grapheme)
            if replacement is not None:
                return replacement
        return "".join(ch if (r := lookup(ch)) is None else r for ch in grapheme)

    def words(self, text: str) -> list[str]:
        """Normalized "▁word" pieces of text without special tokens, as the unigram model sees them."""
        words = []
        for word in _WHITE_SPACE_RUN.split(self.normalize(text)):
            if word:
                if not word.startswith(_WORD_BOUNDARY):
                    word = _WORD_BOUNDARY + word
                # A "▁" inside a word starts a new piece: "▁a▁▁b" -> "▁a", "▁", "▁b".
                words += _PIECE.findall(word)
        return words

    def content_ids(self, text: str) -> list[int]:
        """Token ids of `text` without eos, truncation or padding."""
        parts = self._special_split.split(text)
        # re.split puts the captured special tokens at odd positions.
        words = [self.words(part) for part in parts[::2]]
        encoded = iter(self.sp.encode([w for ws in words for w in ws]))  # one batched call
        ids: list[int] = []
        for i, part in enumerate(parts):
            if i % 2:
                ids.append(self.specials[part])
            else:
                for _ in words[i // 2]:
                    ids += next(encoded)
        return ids

    def tokenize(self, text: str, max_length: int | None = None) -> TokenizedText:
        """Tokenize one prompt to exactly `max_length` ids (default 512; FLUX-schnell uses 256).

        The content is cut to `max_length - 1` tokens so that eos always survives.
        """
        max_length = self.max_length if max_length is None else max_length
        return frame(self.content_ids(text), max_length, self.pad_id, bos=None, eos=self.eos_id)

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """The `max_length` (default 512) token ids of `text`: content, eos, padding."""
        return self.tokenize(text, max_length).ids
